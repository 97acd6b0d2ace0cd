"""Rules: commands that generate data files, as s2build.yaml declares them.

    rules:
      boards:
        command: [python, gen/make_life.py, data/boards.jsonl]   # argv, run without a shell
        inputs: [gen/*.py]                # files, globs, other rules' names or outputs
        outputs: [data/boards.jsonl]      # files, or folders written with a trailing `/`
        env: {N_BOARDS: 4000}             # extra variables (engine/rulerun.py: the rest)

`parse(project, rules_y, allow_outside)` fills `project.rules` ({name: Rule}, yaml order) and
checks what the schema cannot: a string command needs `shell: true`; outputs are relative paths
inside the project, without glob characters, off `.s2build/`, the yaml, every target's output
and every other rule's outputs, and off the rule's own inputs; an input may not read a target's
output (rules run before targets). Edges: an input naming a rule, or matching one of its
outputs, depends on that rule; a target whose `sources` or `holdout.sources` match a rule's
outputs reads it (`readers`). `order` lists rules dependencies first; a cycle is a GraphError
naming it in full (`a -> b -> a`) at the input that closes it. Standard library only.
"""

import fnmatch
import glob
import os
import re

from s2build.errors import ConfigError, GraphError
from s2build.project.schema import CONFIG_NAME, RULE, RULE_NAME
from s2build.project.validate import check_section

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Rule:
    """One rule: `config` is resolved (schema.RULE); `locs` maps key paths inside the rule,
    e.g. ('outputs', 0), to 's2build.yaml:L:C'; `outputs` is [(relpath, is_folder)]."""

    def __init__(self, name, config, locs, root):
        self.name, self.config, self.locs, self.root = name, config, locs, root
        self.outputs = [(os.path.normpath(o).replace(os.sep, "/"), o.endswith("/"))
                        for o in config["outputs"]]

    def loc(self, *path):
        while path and path not in self.locs:
            path = path[:-1]
        return self.locs.get(path)


def _comps_match(pat, path, folder):
    """Whether glob components `pat` can match the path `path` (components), or, when `folder`,
    a file somewhere below that folder. `**` spans any number of components."""
    if not path:
        return not pat or folder or pat == ["**"]
    if not pat:
        return False
    if pat[0] == "**":
        return _comps_match(pat[1:], path, folder) or _comps_match(pat, path[1:], folder)
    return fnmatch.fnmatchcase(path[0], pat[0]) and _comps_match(pat[1:], path[1:], folder)


def overlaps(pattern, output, folder):
    """True when glob `pattern` (relative) can match the file `output`, or a file under the
    folder `output` when `folder`."""
    pat = os.path.normpath(pattern).replace(os.sep, "/").split("/")
    return _comps_match(pat, output.split("/"), folder)


def _rel(path):
    return os.path.normpath(path).replace(os.sep, "/")


def parse(project, rules_y, allow_outside=False):
    """Check every rule under `rules:` (a yamlpos node or None) into `project.rules`."""
    project.rules = {}
    if rules_y is None or not rules_y.value:
        return
    for name, (kloc, ry) in rules_y.value.items():
        if not RULE_NAME.match(name):
            raise ConfigError(f"invalid rule name '{name}'", kloc,
                              "use letters, digits, '_', '.' and '-'")
        if name in project.targets:
            raise ConfigError(f"rule '{name}' has the name of a target", kloc,
                              "give the rule another name")
        locs = {("rules", name, "@key"): kloc}
        cfg = check_section(("rules", name), RULE, ry, locs)
        short = {k[2:]: v for k, v in locs.items()}
        short[()] = kloc
        rule = Rule(name, cfg, short, project.root)
        _check_command(rule)
        _check_env(rule)
        project.rules[name] = rule
    for rule in project.rules.values():
        _check_paths(project, rule, allow_outside)


def _check_command(rule):
    cmd, shell = rule.config["command"], rule.config["shell"]
    if isinstance(cmd, str) and not shell:
        raise ConfigError(f"rules.{rule.name}.command: a string runs only through a shell",
                          rule.loc("command"), "write a list of arguments, e.g. [python, "
                          "gen/make.py], or add `shell: true`")
    if isinstance(cmd, list) and shell:
        raise ConfigError(f"rules.{rule.name}.command: `shell: true` takes one string",
                          rule.loc("command"), "write the command as one string, or drop "
                          "`shell: true` to run the list without a shell")


def _check_env(rule):
    env = {}
    for k, v in rule.config["env"].items():
        where = rule.loc("env", k, "@key")
        if not ENV_NAME.match(str(k)):
            raise ConfigError(f"rules.{rule.name}.env: '{k}' is not a variable name", where,
                              "use letters, digits and '_', not starting with a digit")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ConfigError(f"rules.{rule.name}.env.{k}: expected a string or a number, "
                              f"got {v!r}", rule.loc("env", k), "quote the value")
        env[str(k)] = str(v)
    rule.config["env"] = env


def _check_paths(project, rule, allow_outside):
    name = rule.name
    targets = {}
    for t in project.targets.values():
        for p in (t.config["output"], t.config["output"] + ".json"):
            targets[_rel(p)] = t.name
    for i, (out, folder) in enumerate(rule.outputs):
        where = rule.loc("outputs", i)
        raw = rule.config["outputs"][i]
        if os.path.isabs(raw) or out == ".." or out.startswith("../") or out == ".":
            raise ConfigError(f"rule '{name}': output '{raw}' is outside the project", where,
                              "use a path relative to s2build.yaml's folder, inside it")
        if glob.has_magic(raw):
            raise ConfigError(f"rule '{name}': output '{raw}' is a glob", where,
                              "name each file, or a folder ending in '/'")
        if out == ".s2build" or out.startswith(".s2build/") or out == CONFIG_NAME:
            raise ConfigError(f"rule '{name}': output '{raw}' is s2build's own", where,
                              "write the data elsewhere, e.g. data/")
        for t_out, t_name in targets.items():
            if t_out == out or (folder and t_out.startswith(out + "/")):
                raise ConfigError(f"rule '{name}': output '{raw}' is the output of target "
                                  f"'{t_name}'", where, "write the data elsewhere")
        for other in project.rules.values():
            for j, (o, o_folder) in enumerate(other.outputs):
                if other is rule and j == i:
                    continue
                if o == out or (o_folder and out.startswith(o + "/")) \
                        or (folder and o.startswith(out + "/")):
                    what = "another output of this rule" if other is rule else \
                        f"an output of rule '{other.name}'"
                    raise ConfigError(f"rule '{name}': output '{raw}' overlaps {what} "
                                      f"('{o}{'/' if o_folder else ''}')", where,
                                      "each file has one rule that writes it")
    for i, pattern in enumerate(rule.config["inputs"]):
        where = rule.loc("inputs", i)
        if pattern in project.rules:
            continue
        if os.path.isabs(pattern) and not allow_outside:
            raise ConfigError(f"rule '{name}': input '{pattern}' is absolute", where,
                              "use a path relative to s2build.yaml's folder (or set "
                              "allow_outside_sources: true)")
        for out, folder in rule.outputs:
            if overlaps(pattern, out, folder):
                raise ConfigError(f"rule '{name}': input '{pattern}' matches its own output "
                                  f"'{out}'", where, "a rule cannot read what it writes")
        for t_out, t_name in targets.items():
            if overlaps(pattern, t_out, False):
                raise ConfigError(f"rule '{name}': input '{pattern}' matches the output of "
                                  f"target '{t_name}'", where,
                                  "rules run before targets: a rule cannot read an artifact")


def rule_deps(project, rule):
    """[(other rule name, input index)] that `rule` reads, in input order."""
    out = []
    for i, pattern in enumerate(rule.config["inputs"]):
        if pattern in project.rules:
            out.append((pattern, i))
            continue
        for other in project.rules.values():
            if other is not rule and any(overlaps(pattern, o, f) for o, f in other.outputs):
                out.append((other.name, i))
    return out


def reads(project, target):
    """Names of the rules whose outputs `target`'s source or holdout globs match."""
    globs = target.config["sources"] + (target.config["holdout"]["sources"] or [])
    return [r.name for r in project.rules.values()
            if any(overlaps(g, o, f) for g in globs for o, f in r.outputs)]


def order(project, wanted=None):
    """Names of `wanted` rules (default all) and the rules they read, those first. A cycle is
    a GraphError naming it in full at the input that closes it."""
    from s2build.project import dag

    def cycle(names):
        first = project.rules[names[0]]
        idx = dict((d, i) for d, i in reversed(rule_deps(project, first)))[names[1]]
        raise GraphError("dependency cycle: " + " -> ".join(names), first.loc("inputs", idx),
                         "a rule cannot read, directly or not, what it writes")
    return dag.postorder(project.rules if wanted is None else wanted,
                           lambda n: [d for d, _i in rule_deps(project, project.rules[n])],
                           cycle)

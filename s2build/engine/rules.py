"""Rule keys and planning: whether a rule's outputs are current, and why not, in words.

The key of a rule is the SHA-256 of canonical JSON over:
- `inputs`: {relpath: sha256} of every file its inputs name (globs expanded; a rule's name
  stands for that rule's outputs), stat before hash (fingerprint.digest_files);
- `program`: {relpath: sha256} of every argument of the command that is a file of the
  project (`gen/make_life.py` in `[python, gen/make_life.py, ...]`, a script in a shell
  string) and, for Python files, the project modules they import (fingerprint.user_code's
  `ast` scan);
- `config`: the command, `shell`, the declared `env` and the declared outputs;
- `toolchain`: s2build's version, Python (minor), the machine, and the versions of the
  libraries that touch data bytes (toolchain.TOOL_PACKAGES).
Not in the key: the description, PATH and HOME (where tools are found, not what they do).

`plan(project, names, state, cache)` fingerprints each rule in order and decides:

    up-to-date   the key is the recorded one and every output is the recorded bytes
    restore      the key is cached (store/local.py): write the outputs back, run nothing
    run          run the command (engine/rulerun.py)

A rule reading the outputs of a rule that must run is itself `run`, with an unknown key
(None) until its input rule has run; `pending` names the targets that read such outputs.
Only the standard library: this module is on the no-op path.
"""

import os
import shlex
import sys

from s2build import __version__

from s2build.engine import fingerprint
from s2build.engine import toolchain as toolchain_mod
from s2build.engine.plan import Reason, file_changes
from s2build.errors import ConfigError, UsageError
from s2build.project import rules as rulemod


class RuleInputs:
    """What a rule's outputs are a function of (see the module docstring), and its key."""

    def __init__(self, inputs, program, config, toolchain, scan=None):
        self.inputs, self.program, self.config, self.toolchain = inputs, program, config, toolchain
        self.scan = scan or {}
        self.key = fingerprint.canonical_digest({"inputs": inputs, "program": program,
                                                 "config": config, "toolchain": toolchain})


class RuleStep:
    """rule: project.rules.Rule; inputs: RuleInputs, or None while an input rule must run;
    action: up-to-date | restore | run; reasons: [Reason] ([] when up to date)."""

    def __init__(self, rule, inputs, reasons, action):
        self.rule, self.inputs, self.reasons, self.action = rule, inputs, reasons, action

    @property
    def key(self):
        return self.inputs.key if self.inputs is not None else None


def rule_toolchain():
    tc = {"s2build": __version__, "python": "%d.%d" % sys.version_info[:2],
          "machine": os.uname().machine}
    tc.update(toolchain_mod._installed_versions(toolchain_mod.TOOL_PACKAGES))
    return tc


def argv_words(rule):
    """The words of the command: its list, or the shell string split as a shell would."""
    cmd = rule.config["command"]
    if isinstance(cmd, list):
        return cmd
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


class _Program:
    """A stand-in target for fingerprint.user_code: the project files the command runs."""

    def __init__(self, rule, files):
        self.root, self._files = rule.root, files

    def user_refs(self):
        return [("program", ("command",), rel, "") for rel in self._files]


def program_files(rule):
    """Relative paths of the command's words that are files of the project."""
    out = []
    for word in argv_words(rule):
        if not word or word.startswith("-") or os.path.isabs(word):
            continue
        rel = os.path.normpath(word).replace(os.sep, "/")
        if rel.startswith("../") or rel.startswith(".s2build/"):
            continue
        if any(rel == o or (f and rel.startswith(o + "/")) for o, f in rule.outputs):
            continue
        if os.path.isfile(os.path.join(rule.root, rel)):
            out.append(rel)
    return sorted(set(out))


def output_files(rule):
    """Relative paths of the files the rule's outputs hold now (a folder: every file under it,
    hidden temporaries left out)."""
    out = []
    for rel, folder in rule.outputs:
        path = os.path.join(rule.root, rel)
        if not folder:
            if os.path.isfile(path):
                out.append(rel)
            continue
        for d, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                if not f.startswith(".s2tmp-"):
                    out.append(os.path.relpath(os.path.join(d, f), rule.root).replace(os.sep, "/"))
    return out


def _expand_input(project, rule, i, pattern, expected):
    """Files input `pattern` names now; `expected` maps an input rule's name to the files it
    will hold ({relpath: sha256}) when it is not on disk yet."""
    if pattern in project.rules:
        other = project.rules[pattern]
        return sorted(expected[pattern]) if pattern in expected else output_files(other)
    found = fingerprint._match(rule.root, os.path.normpath(pattern))
    for name, files in expected.items():
        found = [f for f in found if not any(rulemod.overlaps(f, o, d)
                                             for o, d in project.rules[name].outputs)]
        found += [f for f in files if rulemod.overlaps(pattern, f, False)]
    if not found and not any(rulemod.overlaps(pattern, o, f) for r in project.rules.values()
                             for o, f in r.outputs):
        raise ConfigError(f"rule '{rule.name}': input '{pattern}' matches no files",
                          rule.loc("inputs", i),
                          "check the path; it is relative to s2build.yaml's folder")
    return sorted(set(found))


def rule_inputs(project, rule, stat_cache, record=None, expected=None):
    """Fingerprint `rule` now: (RuleInputs, files hashed). `expected`: {rule name: {relpath:
    sha256}} for input rules about to be restored (their cached outputs stand for the files)."""
    expected = expected or {}
    files = []
    for i, pattern in enumerate(rule.config["inputs"]):
        files += _expand_input(project, rule, i, pattern, expected)
    files = sorted(set(files))
    future = {f: d for v in expected.values() for f, d in v.items()}
    d, n = fingerprint.digest_files([f for f in files if f not in future], rule.root, stat_cache)
    d.update({f: future[f] for f in files if f in future})
    program = _Program(rule, program_files(rule))
    prog, scan, _static, n2 = fingerprint.user_code(program, stat_cache,
                                                    {"user_scan": (record or {}).get("user_scan")})
    cfg = {k: rule.config[k] for k in ("command", "shell", "env", "outputs")}
    return RuleInputs(dict(sorted(d.items())), prog, cfg, rule_toolchain(), scan), n + n2


def output_status(rule, record, stat_cache):
    """None when every output holds the bytes the record says, else a Reason."""
    want = record.get("outputs") or {}
    now = output_files(rule)
    for rel in sorted(set(want) - set(now)):
        return Reason("output-missing", f"output missing: {rel}")
    for rel in sorted(set(now) - set(want)):
        return Reason("output-modified", f"output added by hand: {rel}")
    digests, _ = fingerprint.digest_files(now, rule.root, stat_cache)
    for rel in now:
        if digests[rel] != want[rel]:
            return Reason("output-modified", f"output modified: {rel}")
    return None


def reasons(inputs, record):
    """Why `inputs` differ from the last run's `record`, in words (the one place)."""
    if not record:
        return [Reason("never-built", "never run")]
    out = file_changes("", "input", record.get("inputs") or {}, inputs.inputs)
    out += file_changes("program-", "program", record.get("program") or {}, inputs.program)
    old = record.get("config") or {}
    for k in ("command", "shell", "outputs"):
        if old.get(k) != inputs.config[k]:
            out.append(Reason("config", f"{k} changed"))
    oe, ne = old.get("env") or {}, inputs.config["env"]
    for k in sorted(set(oe) | set(ne)):
        if oe.get(k) != ne.get(k):
            out.append(Reason("config", f"env changed: {k} ({oe.get(k)!r} -> {ne.get(k)!r})"))
    ot = record.get("toolchain") or {}
    changed = [k for k in sorted(set(ot) | set(inputs.toolchain))
               if ot.get(k) != inputs.toolchain.get(k)]
    if changed:
        out.append(Reason("toolchain", "toolchain changed: " + ", ".join(
            f"{k} ({ot.get(k)} -> {inputs.toolchain.get(k)})" for k in changed)))
    if not out and record.get("key") != inputs.key:
        out.append(Reason("key", "key changed"))
    return out


def decide(inputs, record, cached, out_reason):
    """(action, [Reason]) from plain facts: `cached` is whether the key is in the cache."""
    if record and record.get("key") == inputs.key:
        if out_reason is None:
            return "up-to-date", []
        return ("restore" if cached else "run"), [out_reason]
    return ("restore" if cached else "run"), reasons(inputs, record)


def plan(project, names, state, cache):
    """[RuleStep] for rule `names` (in order, from needed()); updates state's stat cache."""
    steps, expected, running = [], {}, set()
    for name in names:
        rule = project.rules[name]
        record = state.rules.get(name)
        waits = [d for d, _i in rulemod.rule_deps(project, rule) if d in running]
        if waits:
            running.add(name)
            steps.append(RuleStep(rule, None, [Reason("input-rule", f"input rule '{waits[0]}' "
                                                      "runs first")], "run"))
            continue
        inputs, hashed = rule_inputs(project, rule, state.files, record, expected)
        state.dirty = state.dirty or bool(hashed)
        out_reason = output_status(rule, record, state.files) if record else None
        action, why = decide(inputs, record, cache.has(inputs.key), out_reason)
        if action == "run":
            running.add(name)
        elif action == "restore":
            got = cache.record(inputs.key) or {}
            expected[name] = got.get("output_sha256") or {}
        steps.append(RuleStep(rule, inputs, why, action))
    return steps


def pending(project, steps):
    """{target name: Reason} for targets that read the outputs of a rule that is not up to
    date: their sources are not final yet, so they are not fingerprinted."""
    stale = {s.rule.name: s for s in steps if s.action != "up-to-date"}
    out = {}
    for t in project.targets.values():
        for name in rulemod.reads(project, t):
            if name in stale:
                verb = "runs" if stale[name].action == "run" else "is restored"
                out.setdefault(t.name, Reason("input-rule", f"rule '{name}' {verb} first: "
                                              f"{stale[name].reasons[0].text}"))
    return out


def needed(project, names):
    """(rules to bring up to date, in order; target names, or None when only rules were
    named). `names` may mix targets and rules; none: every rule, every target."""
    from s2build.project import graph
    if not project.rules:                       # targets only: graph.order's own errors
        return [], list(names or [])
    if not names:
        return rulemod.order(project), []
    unknown = [n for n in names if n not in project.rules and n not in project.targets]
    if unknown:
        import difflib
        known = list(project.targets) + list(project.rules)
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise UsageError(f"unknown target or rule '{unknown[0]}'",
                         hint=f"did you mean '{close[0]}'?" if close else
                         "known: " + ", ".join(known))
    targets = [n for n in names if n in project.targets]
    wanted = [n for n in names if n in project.rules]
    for t in graph.order(project, targets) if targets else []:
        wanted += rulemod.reads(project, project.targets[t])
    return rulemod.order(project, list(dict.fromkeys(wanted))), targets or None

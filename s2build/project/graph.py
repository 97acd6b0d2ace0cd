"""The target graph: dependencies between targets, build order, cycles. A target comes after
its `deps` and after the target whose artifact it reads (`upstream.target`).

Plain data and pure functions: `order(project, wanted)` returns the targets to consider, each
after its dependencies; unknown dependencies and cycles are ConfigErrors (GraphError) that name
the yaml location and the whole cycle (`a -> b -> a`).
"""

import difflib

from s2build.project import dag

from s2build.errors import GraphError, UsageError


def upstream(t):
    """The name of the target whose artifact `t` reads (`upstream.target`), or None."""
    up = t.config.get("upstream")
    return up["target"] if up else None


def needs(t):
    """[(name, yaml path)] of the targets `t` comes after: its `deps`, then its upstream."""
    out = [(d, ("deps", i)) for i, d in enumerate(t.config["deps"])]
    if upstream(t) and upstream(t) not in t.config["deps"]:
        out.append((upstream(t), ("upstream", "target")))
    return out


def check(project):
    """Validate every dependency edge (deps and upstream) and the absence of cycles."""
    names = list(project.targets)
    for t in project.targets.values():
        for dep, path in needs(t):
            if dep not in project.targets:
                close = difflib.get_close_matches(dep, names, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "known targets: " + ", ".join(names)
                what = "reads the artifact of" if path[0] == "upstream" else "depends on"
                raise GraphError(f"target '{t.name}' {what} unknown target '{dep}'",
                                 t.loc(*path), hint)
            if dep == t.name:
                raise GraphError(f"dependency cycle: {t.name} -> {t.name}", t.loc(*path))
    _topo(project, names)
    if project.rules:                                   # rules: their own order and cycles
        from s2build.project import rules
        rules.order(project)


def _topo(project, roots):
    """Post-order DFS from `roots`; raise GraphError on a cycle, naming it in full."""
    def cycle(names):
        first = project.targets[names[0]]
        raise GraphError("dependency cycle: " + " -> ".join(names),
                         first.loc(*dict(needs(first))[names[1]]))
    return dag.postorder(roots, lambda n: [d for d, _p in needs(project.targets[n])], cycle)


def order(project, wanted=None):
    """Names of `wanted` targets (default: all) and their dependencies, dependencies first."""
    names = list(project.targets)
    wanted = list(wanted or names)
    for w in wanted:
        if w not in project.targets:
            close = difflib.get_close_matches(w, names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known targets: " + ", ".join(names)
            raise UsageError(f"unknown target '{w}'", hint=hint)
    return _topo(project, wanted)


def dependents(project, name):
    """Names of targets that depend on `name`, directly or not."""
    out, frontier = set(), {name}
    while frontier:
        frontier = {t.name for t in project.targets.values()
                    if {d for d, _p in needs(t)} & frontier and t.name not in out}
        out |= frontier
    return out


def to_dot(project):
    """Graphviz text of the graph (edges point from a dependency to its dependent)."""
    from s2build.project import rules
    lines = ["digraph s2build {", "  rankdir=LR;"]
    for r in project.rules.values():             # rules: ellipses; edges carry the files
        outs = "\\n".join(r.config["outputs"])
        lines.append(f'  "{r.name}" [shape=ellipse, label="{r.name}\\n{outs}"];')
        for dep in dict.fromkeys(d for d, _i in rules.rule_deps(project, r)):
            lines.append(f'  "{dep}" -> "{r.name}";')
    for t in project.targets.values():
        for name in rules.reads(project, t):
            files = ", ".join(project.rules[name].config["outputs"])
            lines.append(f'  "{name}" -> "{t.name}" [label="{files}"];')
    for t in project.targets.values():
        lines.append(f'  "{t.name}" [shape=box, label="{t.name}\\n{t.config["output"]}"];')
        for dep, path in needs(t):
            label = f' [label="{t.config["upstream"]["use"]}"]' if path[0] == "upstream" else ""
            lines.append(f'  "{dep}" -> "{t.name}"{label};')
    lines.append("}")
    return "\n".join(lines)

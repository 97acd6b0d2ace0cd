"""The one post-order walk of a dependency graph: targets (graph.py) and rules (rules.py)
both use it. Plain data, standard library only."""


def postorder(roots, deps, on_cycle):
    """Names reachable from `roots`, each after what `deps(name)` names (post-order DFS; the
    one walk of targets and of rules). A cycle calls `on_cycle(cycle)`, the names in order
    with the first repeated last, which raises."""
    done, stack, out = set(), [], []

    def visit(name):
        if name in done:
            return
        if name in stack:
            on_cycle(stack[stack.index(name):] + [name])
        stack.append(name)
        for dep in deps(name):
            visit(dep)
        stack.pop()
        done.add(name)
        out.append(name)

    for r in roots:
        visit(r)
    return out

"""`s2build lint` end to end: scan the sources, build, load each dataset and its recorded
training dynamics, and run the checks of lint.py. Returns diagnostics; printing is the CLI's.
"""

import os
import sys

from s2build.debug import lint, shortcut


def run(project, wanted, folds=0, verbose=False, digests=None):
    """(sorted [Diagnostic], skipped or None): `skipped` says why the model-based checks did
    not run (the data does not load). Each diagnostic names its target; `digests` (a dict),
    when given, gains {file: sha256} of the files as read (what `lint --apply` checks)."""
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.engine import runner
    from s2build.errors import DataError
    from s2build.project import graph
    from s2build.report import console as report
    from s2build.store.local import Cache
    graph.order(project, wanted)                    # unknown names: did-you-mean error
    steps, _state = runner.status(project, wanted)
    diags = []
    for s in steps:
        if s.target.name in wanted:
            diags += lint.scan_nonfinite(s.target, list(s.inputs.sources) + list(s.inputs.holdout))
    try:
        runner.build(project, wanted, report.Console(verbose=verbose, stream=sys.stderr))
    except DataError as e:
        if not any(d.check == "non-finite" for d in diags):
            diags.append(lint.Diagnostic(e.location or "?", "error", "data", e.message))
        return lint.sort(diags), "the data does not load"
    steps, _state = runner.status(project, wanted)
    cache = Cache(project.state_dir)
    for s in steps:
        if s.target.name not in wanted:
            continue
        ds = data.load_dataset(s.target, s.inputs, ShardStore(project.state_dir))
        path = os.path.join(cache.entry_dir(s.inputs.key), "dynamics.npz")
        dyn = data.load_dynamics(path) if os.path.exists(path) else None
        name = s.target.name
        progress = (lambda f, k, name=name: print(f"{name}: fold {f}/{k} trained",
                                                  file=sys.stderr)) if folds else None
        where = s.target.loc("sources") or s.target.name
        found = lint.run(s.target, ds, dyn, where, folds=folds, progress=progress)
        found += shortcut.for_build(project, s.target, s.inputs.key, ds, where)
        for d in found:
            d.target = name
        diags += found
        if digests is not None:
            digests.update(s.inputs.sources, **s.inputs.holdout)
    return lint.sort(diags), None

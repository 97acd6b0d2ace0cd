"""The metrics recorded with an artifact: every built-in metric of the task and the user's
metrics, on the holdout rows, in memory or block by block for a stream."""

import torch

from s2build.compile import scoring
from s2build.compile.rows import evaluate
from s2build.project import registry


def artifact_metrics(target, ds, trained):
    """Every built-in metric of the task, computed here whatever the `metrics:` list says (the
    artifact records them all, so the list cannot change its bytes), plus the user metrics
    training computed; on the holdout rows, as training's metrics without holdout rows."""
    builtin = [(n, lambda o, t, fn=registry.implementation(registry.METRICS[n]):
                fn(scoring._numpy(o), scoring._numpy(t)))
               for n in registry.metrics_for(ds.task)]
    if ds.x is None:                                # a stream: block by block
        from s2build.compile import stream
        return stream.metrics(trained.module.cpu(), ds, builtin + scoring.metric_fns(target))
    held = torch.from_numpy(ds.holdout)
    if not int(held.sum()):
        return dict(trained.metrics)
    every = evaluate(trained.module.cpu(), torch.from_numpy(ds.x)[held],
                     torch.from_numpy(ds.y)[held], builtin)
    return dict({k: v for k, v in trained.metrics.items() if k not in registry.METRICS}, **every)

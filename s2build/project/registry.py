"""The one registry of tasks, losses and metrics: what exists, what fits what, which way is
better, and where each implementation lives.

    task            default loss    default metrics   output the network produces
    classification  cross_entropy   [accuracy]        one logit per class
    regression      mse             [mse]             one value per output column
    multilabel      bce             [accuracy]        one logit per 0/1 output

    loss            tasks                        metric    tasks                      better
    cross_entropy   classification               accuracy  classification, multilabel higher
    bce             classification, multilabel   f1        classification             higher
    mse, mae, huber regression                   mse, mae  regression                 lower
                                                 r2        regression                 higher

`impl` names the implementation as `module:attribute`: losses are torch per-row functions in
s2build/compile/scoring.py, metrics numpy functions in s2build/compile/metrics.py, called by
training's evaluation on the holdout outputs and by spec gates on the artifact's outputs alike.

User metrics are `path/file.py:fn` and declare their direction in the yaml:

    metrics: [accuracy, {name: "metrics.py:error_rate", higher_is_better: false}]

`metrics_of(config)` turns a target's resolved `metrics` list into `MetricUse`s (short name,
reference, direction); `higher_is_better(config, name)` is the direction lookup for a metric
the target reports. Standard library only: config validation (the no-op path) reads it.
"""

import importlib


class Task:
    __slots__ = ("name", "default_loss", "default_metrics")

    def __init__(self, name, default_loss, default_metrics):
        self.name, self.default_loss, self.default_metrics = name, default_loss, default_metrics


class Loss:
    __slots__ = ("name", "tasks", "impl")

    def __init__(self, name, tasks, impl):
        self.name, self.tasks, self.impl = name, tasks, impl


class Metric:
    __slots__ = ("name", "tasks", "higher_is_better", "impl")

    def __init__(self, name, tasks, higher_is_better, impl):
        self.name, self.tasks, self.higher_is_better, self.impl = name, tasks, \
            higher_is_better, impl


TASKS = {t.name: t for t in (
    Task("classification", "cross_entropy", ("accuracy",)),
    Task("regression", "mse", ("mse",)),
    Task("multilabel", "bce", ("accuracy",)),
)}

_SCORING = "s2build.compile.scoring"
LOSSES = {x.name: x for x in (
    Loss("cross_entropy", ("classification",), f"{_SCORING}:cross_entropy_rows"),
    Loss("bce", ("classification", "multilabel"), f"{_SCORING}:bce_rows"),
    Loss("mse", ("regression",), f"{_SCORING}:mse_rows"),
    Loss("mae", ("regression",), f"{_SCORING}:mae_rows"),
    Loss("huber", ("regression",), f"{_SCORING}:huber_rows"),
)}

_METRICS = "s2build.compile.metrics"
METRICS = {x.name: x for x in (
    Metric("accuracy", ("classification", "multilabel"), True, f"{_METRICS}:accuracy"),
    Metric("f1", ("classification",), True, f"{_METRICS}:f1"),
    Metric("mse", ("regression",), False, f"{_METRICS}:mse"),
    Metric("mae", ("regression",), False, f"{_METRICS}:mae"),
    Metric("r2", ("regression",), True, f"{_METRICS}:r2"),
)}


def losses_for(task):
    """Names of the built-in losses that fit `task`, in registry order."""
    return [n for n, x in LOSSES.items() if task in x.tasks]


def metrics_for(task):
    """Names of the built-in metrics that fit `task`, in registry order."""
    return [n for n, x in METRICS.items() if task in x.tasks]


def implementation(entry):
    """The callable a Loss or Metric names (imports its module: torch or numpy)."""
    module, _, attr = entry.impl.partition(":")
    return getattr(importlib.import_module(module), attr)


class MetricUse:
    """One entry of a target's `metrics`: `name` as it is reported (a user metric's function
    name), `ref` as written (a built-in name or `path/file.py:fn`), `index` in the list,
    `higher_is_better`, and `builtin` (the registry's Metric, None for user metrics)."""

    __slots__ = ("name", "ref", "index", "higher_is_better", "builtin")

    def __init__(self, name, ref, index, higher_is_better, builtin):
        self.name, self.ref, self.index = name, ref, index
        self.higher_is_better, self.builtin = higher_is_better, builtin

    @property
    def ref_path(self):
        """Key path of the reference inside the target's config (for usercode.load, locs)."""
        return ("metrics", self.index) if self.builtin else ("metrics", self.index, "name")


def metrics_of(config):
    """[MetricUse] of a resolved target config, in the yaml's order. Resolved entries are a
    built-in name (str) or, for user metrics, {"name": "path/file.py:fn", "higher_is_better":
    bool}; validation (config.load) guarantees that shape."""
    out = []
    for i, entry in enumerate(config.get("metrics") or []):
        if isinstance(entry, dict):
            ref, up = entry["name"], entry["higher_is_better"]
            out.append(MetricUse(ref.rpartition(":")[2], ref, i, up, None))
        else:
            m = METRICS[entry]
            out.append(MetricUse(entry, entry, i, m.higher_is_better, m))
    return out


def higher_is_better(config, name):
    """Direction of metric `name` as the target reports it (True: higher is better); a built-in
    the target does not list is looked up in the registry; None when unknown."""
    for use in metrics_of(config):
        if use.name == name:
            return use.higher_is_better
    return METRICS[name].higher_is_better if name in METRICS else None

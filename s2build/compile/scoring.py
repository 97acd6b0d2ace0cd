"""Scoring functions: losses and metrics by name, or user functions as `path/file.py:name`.

Losses take (outputs [batch, k], targets) and return a scalar tensor; targets are class indices
(int64 [batch]) for classification and float32 [batch, k] for regression and multilabel.
Built-in losses also exist per row (`ROW_LOSSES`), which training dynamics record for free.
Metrics take the same on the holdout rows and return a float; higher is better for accuracy,
f1 and r2, lower for mse and mae.
"""

import torch
import torch.nn.functional as F

from s2build.compile import usercode
from s2build.errors import BuildError


def _rows(v):
    """Mean over every dimension but the batch: [batch, ...] -> [batch]."""
    return v.reshape(len(v), -1).mean(dim=1)


def _bce_rows(o, t):
    if t.dim() == 1:                  # two-class classification: logit difference
        return F.binary_cross_entropy_with_logits(o[:, 1] - o[:, 0], t.float(), reduction="none")
    return _rows(F.binary_cross_entropy_with_logits(o, t, reduction="none"))


# Per-row losses: (outputs [batch, k], targets) -> [batch]. The training loss is their mean.
ROW_LOSSES = {
    "cross_entropy": lambda o, t: F.cross_entropy(o, t, reduction="none"),
    "bce": _bce_rows,
    "mse": lambda o, t: _rows(F.mse_loss(o, t, reduction="none")),
    "mae": lambda o, t: _rows(F.l1_loss(o, t, reduction="none")),
    "huber": lambda o, t: _rows(F.huber_loss(o, t, reduction="none")),
}
LOSS_TASKS = {"cross_entropy": ("classification",), "bce": ("classification", "multilabel"),
              "mse": ("regression",), "mae": ("regression",), "huber": ("regression",)}


def _accuracy(o, t):
    if t.dim() == 1:
        return (o.argmax(dim=-1) == t).float().mean().item()
    return ((o > 0).float() == t).float().mean().item()      # multilabel: per output


def _f1(o, t):
    pred = o.argmax(dim=-1)
    scores = []
    for c in range(o.shape[-1]):
        tp = ((pred == c) & (t == c)).sum().item()
        fp = ((pred == c) & (t != c)).sum().item()
        fn = ((pred != c) & (t == c)).sum().item()
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def _r2(o, t):
    ss_res = ((t - o) ** 2).sum().item()
    ss_tot = ((t - t.mean(dim=0)) ** 2).sum().item()
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


METRICS = {
    "accuracy": _accuracy,
    "f1": _f1,
    "mse": lambda o, t: F.mse_loss(o, t).item(),
    "mae": lambda o, t: F.l1_loss(o, t).item(),
    "r2": _r2,
}
METRIC_TASKS = {"accuracy": ("classification", "multilabel"), "f1": ("classification",),
                "mse": ("regression",), "mae": ("regression",), "r2": ("regression",)}


def margin(o, t):
    """Per-row margin [batch]: how right the output is; negative means wrong.
    classification: true logit minus the best other; multilabel: the worst signed logit;
    regression: minus the mean absolute error."""
    if t.dim() == 1:
        true = o.gather(1, t[:, None])[:, 0]
        other = o.scatter(1, t[:, None], float("-inf")).max(dim=1).values
        return true - other
    if o.shape == t.shape and ((t == 0) | (t == 1)).all():
        return ((2 * t - 1) * o).min(dim=1).values
    return -_rows((o - t).abs())


def loss_fn(target):
    """The loss of `target` as a callable(outputs, targets) -> scalar tensor."""
    name = target.config["loss"]
    if name in ROW_LOSSES:
        rows = ROW_LOSSES[name]
        return lambda o, t: rows(o, t).mean()
    fn, path = usercode.load(target, ("loss",))

    def user_loss(o, t):
        value = usercode.call(fn, path, f"loss {name}", o, t)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise BuildError(f"loss {name} returned {shape}, expected a scalar tensor",
                             target.loc("loss"), "reduce it, e.g. with .mean()")
        return value
    return user_loss


def metric_fns(target):
    """[(name, callable(outputs, targets) -> float)] in the yaml's order."""
    out = []
    for i, name in enumerate(target.config["metrics"]):
        if name in METRICS:
            out.append((name, METRICS[name]))
            continue
        fn, path = usercode.load(target, ("metrics", i))

        def user_metric(o, t, fn=fn, path=path, name=name, i=i):
            value = usercode.call(fn, path, f"metric {name}", o, t)
            try:
                return float(value)
            except (TypeError, ValueError):
                raise BuildError(f"metric {name} returned {type(value).__name__}, expected a number",
                                 target.loc("metrics", i)) from None
        out.append((name.rpartition(":")[2] if ":" in name else name, user_metric))
    return out

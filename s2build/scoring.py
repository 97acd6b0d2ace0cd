"""Scoring functions: losses and metrics by name, or user functions as `path/file.py:name`.

Losses take (outputs [batch, k], targets) and return a scalar tensor; targets are class indices
(int64 [batch]) for classification and values (float32 [batch] or [batch, k]) for regression.
Metrics take the same on the holdout rows and return a float; higher is better for accuracy,
f1 and r2, lower for mse and mae.
"""

import torch
import torch.nn.functional as F

from . import usercode
from .errors import BuildError


def _as_values(outputs, targets):
    return outputs.reshape(targets.shape) if outputs.numel() == targets.numel() else outputs


LOSSES = {
    "cross_entropy": lambda o, t: F.cross_entropy(o, t),
    "bce": lambda o, t: F.binary_cross_entropy_with_logits(o[:, 1] - o[:, 0], t.float())
    if o.shape[-1] == 2 else F.binary_cross_entropy_with_logits(_as_values(o, t), t.float()),
    "mse": lambda o, t: F.mse_loss(_as_values(o, t), t),
    "mae": lambda o, t: F.l1_loss(_as_values(o, t), t),
    "huber": lambda o, t: F.huber_loss(_as_values(o, t), t),
}


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
    o = _as_values(o, t)
    ss_res = ((t - o) ** 2).sum().item()
    ss_tot = ((t - t.mean()) ** 2).sum().item()
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


METRICS = {
    "accuracy": lambda o, t: (o.argmax(dim=-1) == t).float().mean().item(),
    "f1": _f1,
    "mse": lambda o, t: F.mse_loss(_as_values(o, t), t).item(),
    "mae": lambda o, t: F.l1_loss(_as_values(o, t), t).item(),
    "r2": _r2,
}


def loss_fn(target):
    """The loss of `target` as a callable(outputs, targets) -> scalar tensor."""
    name = target.config["loss"]
    if name in LOSSES:
        return LOSSES[name]
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

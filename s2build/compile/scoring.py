"""Scoring functions in torch: the built-in losses, user losses and metrics as callables.

Losses take (outputs [batch, k], targets) and return a scalar tensor; targets are class indices
(int64 [batch]) for classification and float32 [batch, k] for regression and multilabel.
Built-in losses exist per row (`ROW_LOSSES`, [batch]), which training dynamics record for
free; the training loss is their mean, of standardised values for a built-in regression network
(`row_loss(target, scale)`). Which loss fits which task, and the defaults, are in
s2build/project/registry.py; metrics are computed in s2build/compile/metrics.py (numpy), and
`metric_fns` hands them torch outputs.
"""

import torch
import torch.nn.functional as F

from s2build.compile import metrics as metric_impl
from s2build.compile import usercode
from s2build.errors import BuildError
from s2build.project import registry


def _rows(v):
    """Mean over every dimension but the batch: [batch, ...] -> [batch]."""
    return v.reshape(len(v), -1).mean(dim=1)


def cross_entropy_rows(o, t):
    return F.cross_entropy(o, t, reduction="none")


def bce_rows(o, t):
    if t.dim() == 1:                  # two-class classification: logit difference
        return F.binary_cross_entropy_with_logits(o[:, 1] - o[:, 0], t.float(), reduction="none")
    return _rows(F.binary_cross_entropy_with_logits(o, t, reduction="none"))


def mse_rows(o, t):
    return _rows(F.mse_loss(o, t, reduction="none"))


def mae_rows(o, t):
    return _rows(F.l1_loss(o, t, reduction="none"))


def huber_rows(o, t):
    return _rows(F.huber_loss(o, t, reduction="none"))


# Per-row losses by name: (outputs [batch, k], targets) -> [batch], as the registry names them.
ROW_LOSSES = {name: registry.implementation(x) for name, x in registry.LOSSES.items()}


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


def row_loss(target, scale=None):
    """The built-in per-row loss of `target` (None for a user loss). `scale` [k]: the output
    scale of a regression network (models.target_scale): the loss is of standardised values,
    rows(o / scale, t / scale), so its size and the learning rate do not depend on the units
    of the targets (a user loss gets raw values)."""
    rows = ROW_LOSSES.get(target.config["loss"])
    if rows is None or scale is None:
        return rows
    return lambda o, t: rows(o / scale, t / scale)


def loss_fn(target, scale=None):
    """The loss of `target` as a callable(outputs, targets) -> scalar tensor (`scale`: as
    row_loss)."""
    name = target.config["loss"]
    if name in ROW_LOSSES:
        rows = row_loss(target, scale)
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


def _numpy(v):
    return v.detach().to("cpu").numpy()


def metric_fns(target):
    """[(name, callable(outputs, targets) -> float)] in the yaml's order, on torch tensors:
    the implementations of s2build/compile/metrics.py, the ones spec gates call."""
    return [(name, lambda o, t, fn=fn: fn(_numpy(o), _numpy(t)))
            for name, fn in metric_impl.functions(target)]

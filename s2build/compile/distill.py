"""Soft labels from an upstream target (`upstream: {use: soft_labels}`): knowledge distillation.

`row_loss(target, ds, train_rows, hard, device)` returns None when the target distils nothing,
else a callable (out [b, k], y [b], on [b] positions in the training rows) -> [b]:

    (1 - weight) * hard(out, y) + weight * T^2 * KL(softmax(u / T) || softmax(out / T))

with u the upstream's logits for those rows (ds.soft), T `upstream.temperature` and `weight`
`upstream.weight` (Hinton et al. 2015: the T^2 keeps the soft part's gradients the size of the
hard part's). Per row, so training dynamics record it as they record any built-in loss.
"""

import torch
import torch.nn.functional as F

from s2build.errors import ConfigError


def row_loss(target, ds, train_rows, hard, device):
    soft = getattr(ds, "soft", None)
    if soft is None:
        return None
    if hard is None:
        raise ConfigError("upstream.use soft_labels mixes the upstream's logits into a built-in "
                          f"loss; loss {target.config['loss']} is user code",
                          target.loc("loss"), "remove loss (cross_entropy is the default)")
    cfg = target.config["upstream"]
    t, w = float(cfg["temperature"]), float(cfg["weight"])
    teacher = torch.from_numpy(soft)[torch.from_numpy(train_rows)].to(device)   # [n_train, k]
    target_p = F.softmax(teacher / t, dim=-1)

    def loss(out, y, on):
        kd = F.kl_div(F.log_softmax(out / t, dim=-1), target_p.index_select(0, on),
                      reduction="none").sum(dim=-1) * (t * t)
        return (1.0 - w) * hard(out, y) + w * kd
    return loss

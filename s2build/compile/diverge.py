"""A training run that went wrong: the round loss is NaN or inf, or it exploded."""

import math

from s2build.errors import BuildError


class Diverged(BuildError):
    """A round's mean training loss is not finite, or it exploded (see check_loss)."""


EXPLODED_CE = 1e4        # a per-row cross-entropy or bce above this: logits apart by ~1e4
EXPLODED_RATIO = 1e6     # any loss this many times its best earlier round


def check_loss(target, loss, history, where):
    """Raise Diverged when `loss` (the mean of round `where`, e.g. 'epoch 3') is NaN or inf,
    when a classification loss is above EXPLODED_CE (a sane network sits near ln(classes)),
    or when it is EXPLODED_RATIO times the best earlier round. The hint names train.lr."""
    why = None
    if not math.isfinite(loss):
        why = f"loss is {loss}"
    elif target.config["loss"] in ("cross_entropy", "bce") and loss > EXPLODED_CE:
        why = f"loss exploded to {loss:.3g} (a working classifier stays near 1)"
    elif history and min(history) > 0 and loss > EXPLODED_RATIO * min(history):
        why = f"loss exploded to {loss:.3g} from {min(history):.3g}"
    if why:
        lr = target.config["train"]["lr"]
        raise Diverged(f"training diverged at {where}: {why}", target.loc("train", "lr"),
                       f"lower train.lr (now {lr:g}), e.g. to {lr / 100:g}, or check the data "
                       "for huge values")

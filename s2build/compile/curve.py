"""The holdout curve: the target's loss and its first metric on the holdout rows after each
epoch of a recorded run (train.Recorder), the curve `s2build report` draws beside the training
loss.

It is taken on at most CURVE_ROWS holdout rows, evenly spaced, so that a large holdout costs one
small forward pass per epoch; an epoch that already ran every holdout row (a checkpoint, the
last) reuses that pass. The pass is in eval mode and under no_grad: no weight, optimizer,
batch-norm or random-generator state changes, so the artifact's bytes are those of a run
without it. It is a fact of the build (the sidecar's `holdout_history`), never in the artifact
or the build key:

    {"rows": int (holdout rows used), "of": int (holdout rows), "loss": [float|None per epoch],
     "metric": str|None, "values": [float|None per epoch]}

None stands for a non-finite value (JSON has no NaN).
"""

import math

import numpy as np
import torch

from s2build.compile.rows import forward_all

CURVE_ROWS = 2048          # holdout rows the per-epoch pass runs at most


def _number(v):
    v = float(v)
    return v if math.isfinite(v) else None


class HoldoutCurve:
    """Per-epoch holdout loss and metric of a train.Run (`add` once per epoch)."""

    def __init__(self, run):
        n = len(run.x_hold)
        self.n, self.run = n, run
        self.pos = torch.from_numpy(np.unique(np.linspace(0, n - 1, min(n, CURVE_ROWS))
                                              .astype(np.int64))) if n else None
        self.y = run.y_hold[self.pos] if n else None
        self.metric = run.metric_fns[0] if run.metric_fns else None
        self.loss, self.values = [], []

    def add(self, out_hold=None):
        """One epoch's point: from `out_hold` (the outputs of every holdout row, when this epoch
        ran them) or from a pass over the curve's rows."""
        if self.pos is None:
            return
        run = self.run
        if out_hold is not None:
            out = out_hold[self.pos.to(out_hold.device)]
        else:
            run.net.eval()                  # fit() puts it back in train mode each epoch
            out, _ = forward_all(run.net, run.x_hold[self.pos].to(run.device))
        out = out.float().cpu()
        with torch.no_grad():
            self.loss.append(_number(run.loss_fn(out, self.y)))
        if self.metric is not None:
            self.values.append(_number(self.metric[1](out, self.y)))

    def facts(self):
        """The sidecar's `holdout_history`, or None without holdout rows."""
        if self.pos is None:
            return None
        return {"rows": int(len(self.pos)), "of": int(self.n), "loss": self.loss,
                "metric": self.metric[0] if self.metric else None, "values": self.values}

"""Rows of a dataset as a network reads them: TrainRows (a gather, no copy), forward_all
(outputs in batches, no grad) and evaluate (holdout metrics)."""

import torch


class TrainRows:
    """`xd[idx]` = x_all[pos[idx]] (idx: int64 [b] or a slice): rows of x_all (the training
    rows, the holdout rows) without copying them. Gathers with index_select, 4-5x faster than
    advanced indexing on the CPU. `to(device)`: itself on the CPU, else the rows copied there."""

    def __init__(self, x_all, pos):
        self.x_all, self.pos = x_all, pos

    def __len__(self):
        return len(self.pos)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self.x_all.index_select(0, self.pos[idx])
        return self.x_all.index_select(0, self.pos.index_select(0, idx))

    def to(self, device):
        if str(device) == "cpu":
            return self
        return self.x_all.index_select(0, self.pos).to(device)


def forward_all(module, x, batch=2048, capture=None):
    """Outputs of `module` on every row of `x` (no grad); with `capture` (a module), also the
    inputs it received: returns (outputs, captured or None)."""
    seen = []
    hook = capture.register_forward_hook(lambda m, i, o: seen.append(i[0].detach())) \
        if capture is not None else None
    try:
        with torch.no_grad():
            out = torch.cat([module(x[i:i + batch]) for i in range(0, len(x), batch)]) \
                if len(x) else torch.zeros(0)
    finally:
        if hook:
            hook.remove()
    return out, (torch.cat(seen).reshape(len(x), -1) if seen else None)


def evaluate(module, x, y, metric_fns):
    """Holdout metrics of `module` on (x, y); {} when there are no rows."""
    if len(x) == 0:
        return {}
    module.eval()
    out, _ = forward_all(module, x)
    return {name: fn(out, y) for name, fn in metric_fns}

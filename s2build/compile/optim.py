"""Optimizers by name (`train.optimizer`), without importing torch._dynamo.

torch wraps `Optimizer.add_param_group`, `zero_grad`, `state_dict`, `load_state_dict` in
`torch._disable_dynamo` and every optimizer's `step` in `_use_grad_for_differentiable`; both
import torch._dynamo on first call (1.1-1.9 s on the 2-core machine, a third of a fresh
process's fixed cost) only to switch off a compiler that s2build never runs on the optimizer.
`make_optimizer` returns an instance of a subclass whose methods call the undecorated bodies:
the same code on the same tensors, so the same bits (tests/test_optim.py checks SGD, Adam and
AdamW step for step against the stock classes). `step` runs under `torch.no_grad()`, which is
what the stock wrapper does for non-differentiable optimizers; the stock profiler/hook wrapper
that `Optimizer.__init__` puts around `step` still applies.
"""

import inspect

import torch
from torch.optim import Optimizer


def _body(fn):
    return inspect.unwrap(fn)


class _Eager:
    """Mixin: the dynamo-free entry points (put before the torch optimizer in the MRO)."""

    def add_param_group(self, param_group):
        return _body(Optimizer.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none=True):
        return _body(Optimizer.zero_grad)(self, set_to_none)

    def state_dict(self):
        return _body(Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict):
        return _body(Optimizer.load_state_dict)(self, state_dict)

    def step(self, closure=None):
        with torch.no_grad():
            return self._stock_step(self, closure)


def _eager(cls):
    body = _body(cls.step)
    return type(cls.__name__, (_Eager, cls), {"_stock_step": staticmethod(body),
                                              "__module__": __name__})


SGD = _eager(torch.optim.SGD)
Adam = _eager(torch.optim.Adam)
AdamW = _eager(torch.optim.AdamW)


def make_optimizer(params, t):
    """The optimizer `t` (a target's `train` config) names, over `params`."""
    if t["optimizer"] == "sgd":
        return SGD(params, lr=t["lr"], momentum=t["momentum"], weight_decay=t["weight_decay"])
    cls = AdamW if t["optimizer"] == "adamw" else Adam
    return cls(params, lr=t["lr"], weight_decay=t["weight_decay"])

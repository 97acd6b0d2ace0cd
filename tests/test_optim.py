"""The dynamo-free optimizers (s2build/compile/optim.py): the same bits as torch's, and a
fresh process trains and exports (legacy) without importing torch._dynamo."""

import subprocess
import sys

import pytest
import torch

from s2build.compile import optim

CONFIGS = {
    "sgd": dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": dict(optimizer="adam", lr=0.01, weight_decay=0.0),
    "adamw": dict(optimizer="adamw", lr=0.01, weight_decay=0.01),
}
STOCK = {"sgd": lambda p, t: torch.optim.SGD(p, lr=t["lr"], momentum=t["momentum"],
                                             weight_decay=t["weight_decay"]),
         "adam": lambda p, t: torch.optim.Adam(p, lr=t["lr"], weight_decay=t["weight_decay"]),
         "adamw": lambda p, t: torch.optim.AdamW(p, lr=t["lr"], weight_decay=t["weight_decay"])}


def _steps(net, opt, n, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 5, generator=g)
        y = torch.randint(0, 3, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_bits_as_the_stock_optimizer(name):
    t = CONFIGS[name]
    nets = []
    for make in (optim.make_optimizer, STOCK[name]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        opt = make(net.parameters(), t)
        _steps(net, opt, 7, seed=1)
        state = opt.state_dict()                 # a dev build's resume: save, load, go on
        opt2 = make(net.parameters(), t)
        opt2.load_state_dict(state)
        _steps(net, opt2, 5, seed=2)
        nets.append(net)
    ours, stock = (n.state_dict() for n in nets)
    assert isinstance(optim.make_optimizer(nets[0].parameters(), t), torch.optim.Optimizer)
    for k in stock:
        assert torch.equal(ours[k], stock[k]), k


def test_a_fresh_process_trains_without_torch_dynamo(tmp_path):
    code = """
import io, sys, warnings
import torch
from s2build.compile import optim
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
opt = optim.make_optimizer(net.parameters(), dict(optimizer="adam", lr=1e-3, weight_decay=0))
net(torch.randn(5, 4)).sum().backward()
opt.step()
opt.zero_grad()
from s2build.compile import export
export.export_onnx(net.eval(), torch.zeros(2, 4), output_names=["y"], metadata={},
                   exporter="legacy")
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr

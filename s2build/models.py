"""Models: built-in architectures by name, user models as `path/file.py:Name`.

`build(target, n_features, n_outputs, x_train)` returns a torch module mapping a float32 batch
[batch, n_features] to [batch, n_outputs] (logits for classification, values for regression).
Feature standardisation (mean/std of the training rows) lives inside the network as buffers, so
the exported ONNX file takes raw features.

    mlp   hidden: [64, 64]   widths of hidden layers
          activation: relu   relu | tanh | gelu | silu
          dropout: 0.0       dropout after each hidden layer (training only)
          normalize: true    standardise inputs inside the network

A user model class is called as `Name(in_features=..., out_features=..., **args)`.
"""

import torch
from torch import nn

from . import usercode
from .errors import BuildError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class Standardize(nn.Module):
    """x -> (x - mean) / std with statistics frozen from the training rows."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x):
        return (x - self.mean) / self.std


def mlp(n_features, n_outputs, hidden, activation, dropout):
    layers, width = [], n_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def build(target, n_features, n_outputs, x_train):
    m = target.config["model"]
    if m["type"] == "mlp":
        net = mlp(n_features, n_outputs, m["hidden"], m["activation"], m["dropout"])
        if m["normalize"]:
            mean = x_train.mean(dim=0)
            std = x_train.std(dim=0, unbiased=False)
            std = torch.where(std > 1e-8, std, torch.ones_like(std))
            net = nn.Sequential(Standardize(mean, std), net)
        return net
    cls, path = usercode.load(target, ("model", "type"))
    net = usercode.call(cls, path, f"model {m['type']}", in_features=n_features,
                        out_features=n_outputs, **m["args"])
    if not isinstance(net, nn.Module):
        raise BuildError(f"model {m['type']} returned {type(net).__name__}, not a torch.nn.Module",
                         target.loc("model", "type"))
    return net


class Exported(nn.Module):
    """What goes into the ONNX file: classification -> (logits, probabilities), regression ->
    (output,)."""

    def __init__(self, net, task):
        super().__init__()
        self.net = net
        self.task = task

    def forward(self, x):
        out = self.net(x)
        if self.task == "classification":
            return out, torch.softmax(out, dim=-1)
        return out

    @property
    def output_names(self):
        return ["logits", "probabilities"] if self.task == "classification" else ["output"]

"""Models: built-in architectures by name, user models as `path/file.py:Name`.

`build(target, in_shape, n_outputs, x_train)` returns a torch module mapping a float32 batch
[batch, *in_shape] to [batch, n_outputs] (logits for classification and multilabel, values for
regression). Standardisation statistics of the training rows live inside the network as
buffers, so the exported ONNX file takes raw features.

    mlp   hidden: [64, 64]   widths of hidden layers
          activation: relu   relu | tanh | gelu | silu
          dropout: 0.0       dropout after each hidden layer (training only)
          normalize: true    standardise inputs inside the network

    cnn   channels: [16, 32] conv layers (kernel x kernel, 'same' padding: zeros | circular)
          pool: 2            max-pool factor after the convs (1: none)
          head: dense        dense: flatten + `hidden` linear layers; conv: 1x1 convs, one
                             output per cell (for board-to-board programs such as Life)
          normalize: false   standardise inputs with one mean/std

A user model class is called as `Name(in_features=..., in_shape=[...], out_features=..., **args)`.
"""

import torch
from torch import nn

from s2build.compile import usercode
from s2build.errors import BuildError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class Unstandardize(nn.Module):
    """y -> y * std + mean: the last layer of a built-in regression network, with the training
    targets' statistics, so the layers before it learn standardised targets (grams and dollars
    train as well as unit values) and the network, its ONNX file included, gives raw values."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, y):
        return y * self.std + self.mean


def target_scale(net):
    """The std [k] a network's outputs are scaled by (its Unstandardize), or None."""
    last = net[-1] if isinstance(net, nn.Sequential) and len(net) else None
    return last.std if isinstance(last, Unstandardize) else None


def _target_stats(y_train, n_outputs):
    """(mean, std) [n_outputs] of the training targets; (0, 1) without them (a network about
    to load saved weights)."""
    if y_train is None or not len(y_train):
        return torch.zeros(n_outputs), torch.ones(n_outputs)
    y = y_train.reshape(len(y_train), -1).double()
    std = y.std(dim=0, unbiased=False)
    std = torch.where(torch.isfinite(std) & (std > 1e-8), std, torch.ones_like(std))
    return y.mean(dim=0).float(), std.float()


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


class CNN(nn.Module):
    """Convolutions [batch, C, H, W] -> [batch, n_outputs]. head 'dense': flatten + linear
    layers; head 'conv': 1x1 convolutions giving n_outputs / (H*W) values per cell, flattened
    cell-major (row-major over the board for one value per cell)."""

    def __init__(self, in_shape, n_outputs, channels, kernel, padding, pool, head, hidden,
                 activation, dropout):
        super().__init__()
        c, h, w = in_shape
        act = ACTIVATIONS[activation]
        layers = []
        for ch in channels:
            layers += [nn.Conv2d(c, ch, kernel, padding=kernel // 2, padding_mode=padding), act()]
            c = ch
        if pool > 1:
            layers.append(nn.MaxPool2d(pool))
            h, w = h // pool, w // pool
        self.features = nn.Sequential(*layers)
        if head == "dense":
            out, width = [nn.Flatten()], c * h * w
            for hd in hidden:
                out += [nn.Linear(width, hd), act()] + ([nn.Dropout(dropout)] if dropout else [])
                width = hd
            out.append(nn.Linear(width, n_outputs))
        else:
            if n_outputs % (h * w):
                raise BuildError(f"model.head conv gives one output per cell of a {h}x{w} map, but "
                                 f"the target has {n_outputs} outputs")
            out = []
            for hd in hidden:
                out += [nn.Conv2d(c, hd, 1), act()]
                c = hd
            out += [nn.Conv2d(c, n_outputs // (h * w), 1), nn.Flatten()]
        self.head = nn.Sequential(*out)

    def forward(self, x):
        return self.head(self.features(x))


def build(target, in_shape, n_outputs, x_train, y_train=None):
    """The network for `target`: input [batch, *in_shape] -> [batch, n_outputs]. A built-in
    model of a regression target ends in Unstandardize (statistics of `y_train`); a user model
    is the user's, outputs and all."""
    net = _build(target, in_shape, n_outputs, x_train)
    if target.config["loader"]["task"] == "regression" and \
            target.config["model"]["type"] in ("mlp", "cnn"):
        net = nn.Sequential(*(list(net) if isinstance(net, nn.Sequential) else [net]),
                            Unstandardize(*_target_stats(y_train, n_outputs)))
    return net


def _build(target, in_shape, n_outputs, x_train):
    m = target.config["model"]
    if m["type"] == "mlp":
        n_features = int(torch.tensor(in_shape).prod()) if in_shape else 1
        net = mlp(n_features, n_outputs, m["hidden"], m["activation"], m["dropout"])
        pre = [nn.Flatten()] if len(in_shape) > 1 else []
        if m["normalize"]:
            flat = x_train.reshape(len(x_train), -1)
            mean = flat.mean(dim=0)
            std = flat.std(dim=0, unbiased=False)
            std = torch.where(std > 1e-8, std, torch.ones_like(std))
            pre.append(Standardize(mean, std))
        return nn.Sequential(*pre, net) if pre else net
    if m["type"] == "cnn":
        if len(in_shape) != 3:
            raise BuildError(f"model cnn needs rows shaped [channels, height, width], got "
                             f"{list(in_shape)}", target.loc("model", "type"),
                             "set loader.shape, e.g. [1, 8, 8]")
        net = CNN(in_shape, n_outputs, m["channels"], m["kernel"], m["padding"], m["pool"],
                  m["head"], m["hidden"], m["activation"], m["dropout"])
        if m["normalize"]:
            std = x_train.std().clamp_min(1e-8)
            net = nn.Sequential(Standardize(x_train.mean(), std), net)
        return net
    cls, path = usercode.load(target, ("model", "type"))
    try:
        net = usercode.call(cls, path, f"model {m['type']}",
                            in_features=int(torch.tensor(in_shape).prod()),
                            in_shape=list(in_shape), out_features=n_outputs, **m["args"])
    except BuildError as e:
        cause = e.__cause__
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause) \
                and usercode.user_location(cause, path) is None:
            e.location = target.loc("model", "args") if m["args"] else target.loc("model", "type")
            e.hint = "model.args holds the keywords besides in_features, in_shape and " \
                     "out_features: remove the one it does not take, or add it to __init__"
        raise
    if not isinstance(net, nn.Module):
        raise BuildError(f"model {m['type']} returned {type(net).__name__}, not a torch.nn.Module",
                         target.loc("model", "type"))
    _check_output(target, net, path, x_train[:2], n_outputs)
    return net


def _check_output(target, net, path, probe, n_outputs):
    """A user network's output for a probe batch must be float [batch, n_outputs]: a wrong
    width is the user's mistake at model.type, not an s2build crash later in the loss."""
    if len(probe) == 0:
        return
    m = target.config["model"]
    was = net.training
    net.eval()
    with torch.no_grad():
        out = usercode.call(net, path, f"model {m['type']} forward", probe)
    net.train(was)
    shape = list(out.shape) if isinstance(out, torch.Tensor) else None
    if shape != [len(probe), n_outputs] or not out.is_floating_point():
        got = f"{shape} ({out.dtype})".replace("torch.", "") if shape is not None \
            else type(out).__name__
        raise BuildError(f"model {m['type']} gives {got} for a batch of {len(probe)} rows; the "
                         f"target needs float [batch, {n_outputs}]", target.loc("model", "type"),
                         f"make out_features ({n_outputs}) the width of its last layer")


def last_linear(module):
    """The last nn.Linear in `module` (its input is the penultimate embedding), or None."""
    found = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            found = sub
    return found


def split_last(net):
    """(body, last) with net(x) == last(body(x)) and `last` the network's final nn.Linear (and
    its Unstandardize), or None when the network does not end in one (a conv head, most user
    models)."""
    if isinstance(net, nn.Linear):
        return nn.Identity(), net
    if isinstance(net, CNN):
        got = split_last(net.head)
        return (nn.Sequential(net.features, got[0]), got[1]) if got else None
    if isinstance(net, nn.Sequential) and len(net) > 1 and isinstance(net[-1], Unstandardize):
        got = split_last(nn.Sequential(*list(net)[:-1]))
        return (got[0], nn.Sequential(got[1], net[-1])) if got else None
    if isinstance(net, nn.Sequential) and len(net):
        got = split_last(net[-1])
        if got is not None:
            return nn.Sequential(*list(net)[:-1], got[0]), got[1]
    return None


class Exported(nn.Module):
    """What goes into the ONNX file: classification -> (logits, probabilities) with softmax;
    multilabel -> (logits, probabilities) with a sigmoid per output; regression -> output.
    embedding=True (export.embedding) adds `embedding`, the last linear layer's input, for a
    downstream target to read; a network without a final linear layer is a BuildError."""

    def __init__(self, net, task, embedding=False, where=None):
        super().__init__()
        self.net = net
        self.task = task
        self.split = None
        if embedding:
            self.split = split_last(net)
            if self.split is None:
                raise BuildError("export.embedding: the network does not end in a linear "
                                 "layer, so it has no embedding to export", where,
                                 hint="use an mlp or a cnn with head: dense, or remove it")
            self.body, self.last = self.split

    def forward(self, x):
        if self.split is not None:
            emb = self.body(x)
            out = self.last(emb)
        else:
            out = self.net(x)
        if self.task == "classification":
            res = (out, torch.softmax(out, dim=-1))
        elif self.task == "multilabel":
            res = (out, torch.sigmoid(out))
        else:
            res = (out,)
        if self.split is not None:
            res = res + (emb.flatten(1),)
        return res if len(res) > 1 else res[0]

    @property
    def output_names(self):
        names = ["output"] if self.task == "regression" else ["logits", "probabilities"]
        return names + (["embedding"] if self.split is not None else [])

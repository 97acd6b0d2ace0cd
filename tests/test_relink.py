"""The graph cache (compile/relink.py): real torch modules, both real exporters, real files.

A relinked artifact is byte for byte a fresh export of the same weights (built-in mlp and cnn,
a user model defined here); a graph computed from the weights is not relinkable and is exported
every time; the key moves with what changes the graph; a damaged entry is a miss; and a CLI
rebuild relinks, with the same bytes as a build from scratch.
"""

import json
import os
import shutil
import time

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from conftest import run, sha256  # noqa: E402
from s2build.compile import export, graphkey, models, relink  # noqa: E402
from toy import make_project, relabel  # noqa: E402

META = {"s2build.build_key": "k", "z": "last"}


class Gated(nn.Module):
    """A user model: a gated linear unit with a learned temperature."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.a = nn.Linear(in_features, 8)
        self.b = nn.Linear(in_features, 8, bias=False)
        self.out = nn.Linear(8, out_features)
        self.temperature = nn.Parameter(torch.full((), 0.7))
        self.scale = 0.5

    def forward(self, x):
        h = self.a(x) * torch.sigmoid(self.b(x) / self.temperature)
        return self.out(h) * self.scale


class Folded(nn.Module):
    """Computes with a function of a weight: the exporter folds it into a new initializer."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):
        return x @ (self.w * 2.0).t()


class Branchy(nn.Module):
    """Python control flow on a weight: the legacy tracer bakes the branch in."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.full((5,), 3.0))

    def forward(self, x):
        return x * self.w if float(self.w.sum()) > 0 else x - self.w


class Scaled(nn.Module):
    """A model argument reaches the graph only through a lambda's closure."""

    def __init__(self, alpha):
        super().__init__()
        self.lin = nn.Linear(5, 2)
        self.f = lambda x: x * alpha

    def forward(self, x):
        return self.f(self.lin(x))


def _model(kind, seed, task="classification"):
    """(Exported wrapper, example input) with weights drawn from `seed`."""
    torch.manual_seed(seed)
    if kind == "mlp":
        x = torch.randn(64, 13)
        net = nn.Sequential(models.Standardize(x.mean(0), x.std(0)),
                            models.mlp(13, 3, [32, 32], "relu", 0.0))
    elif kind == "cnn":
        x = torch.rand(64, 1, 8, 8)
        net = nn.Sequential(models.Standardize(x.mean(), x.std()),
                            models.CNN([1, 8, 8], 10, [16, 32], 3, "zeros", 2, "dense", [],
                                       "relu", 0.0))
    else:
        x = torch.randn(64, 6)
        net = Gated(6, 3)
    return models.Exported(net, task).eval(), x[:4]


def _both(module, x, exporter, folder, metadata=META):
    """(relinked bytes, note) and the fresh export of the same module."""
    got = relink.export_onnx(module, x, output_names=module.output_names, metadata=metadata,
                             exporter=exporter, graphs_dir=str(folder))
    return got, export.export_onnx(module, x, output_names=module.output_names,
                                   metadata=metadata, exporter=exporter)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "user"])
def test_relinked_weights_are_a_fresh_export_byte_for_byte(tmp_path, kind, exporter):
    w1, x = _model(kind, 1)
    first, note = relink.export_onnx(w1, x, output_names=w1.output_names, metadata=META,
                                     exporter=exporter, graphs_dir=str(tmp_path))
    assert note.startswith("graph exported: cached for relinking"), note
    assert [p.suffix for p in tmp_path.iterdir()] == [".graph"]
    w2, x2 = _model(kind, 2)
    assert any((a != b).any() for a, b in zip(w1.state_dict().values(),
                                              w2.state_dict().values()))
    before = dict(relink.COUNTS)
    (data, note), fresh = _both(w2, x2 if kind != "user" else x, exporter, tmp_path,
                                metadata=dict(META, other="W2"))
    assert note.startswith("graph relinked"), note
    assert relink.COUNTS["relinked"] == before.get("relinked", 0) + 1
    assert relink.COUNTS["exported"] == before.get("exported", 0)      # no export for W2
    assert data == fresh
    if exporter == "legacy":                 # the first artifact too is the fresh export
        assert first == export.export_onnx(w1, x, output_names=w1.output_names, metadata=META,
                                           exporter=exporter)
    # weights an exporter simplifies on (a zero bias: dynamo drops it; two equal tensors: both
    # merge them) are exported afresh, never relinked into the generic graph
    if exporter == "dynamo" and kind != "mlp":
        return                               # (dynamo exports are slow: the mlp says it)
    bias = [t for n, t in w2.named_parameters() if n.endswith("bias")][-1]
    with torch.no_grad():
        bias.zero_()
    (data, note), fresh = _both(w2, x2 if kind != "user" else x, exporter, tmp_path)
    assert note.startswith("graph exported: the weights have special values") and \
        "is all 0" in note, note
    assert data == fresh


def test_special_values_in_the_learning_build_store_nothing(tmp_path):
    w1, x = _model("mlp", 1)
    with torch.no_grad():
        w1.net[1][2].bias.copy_(w1.net[1][0].bias)      # the legacy exporter merges them
    (data, note), fresh = _both(w1, x, "legacy", tmp_path)
    assert data == fresh
    assert note == "graph exported: not learned: the weights have special values " \
        "(net.1.2.bias equals net.1.0.bias)", note
    assert not list(tmp_path.iterdir())
    w2, _ = _model("mlp", 2)
    assert _both(w2, x, "legacy", tmp_path)[0][1].startswith("graph exported: cached")


@pytest.mark.parametrize("cls, why", [(Folded, "computed from the weights"),
                                      (Branchy, "does not reproduce a fresh export")])
def test_a_graph_computed_from_the_weights_is_not_relinkable(tmp_path, cls, why):
    x = torch.randn(4, 5)
    for seed in (1, 2):                      # learned once, then exported every time
        torch.manual_seed(seed)
        net = cls().eval()
        before = relink.COUNTS["exported"]
        data, note = relink.export_onnx(net, x, output_names=["y"], metadata={},
                                        exporter="legacy", graphs_dir=str(tmp_path))
        assert "not relinkable" in note and why in note, note
        assert relink.COUNTS["exported"] == before + 1
        assert data == export.export_onnx(net, x, output_names=["y"], metadata={},
                                          exporter="legacy")
    (entry,) = tmp_path.iterdir()
    assert relink.parse_entry(entry.read_bytes())[0].relinkable is False


def test_the_key_moves_with_what_changes_the_graph(tmp_path):
    def key(module, x, **kw):
        args = dict(output_names=module.output_names, exporter="legacy", opset=None)
        args.update(kw)
        return graphkey.graph_key(module, x, **args)[0]

    mlp, x = _model("mlp", 1)
    base = key(mlp, x)
    assert key(_model("mlp", 2)[0], _model("mlp", 2)[1]) == base        # other weights, data
    # multilabel has the same output names and tensors as classification: sigmoid, not softmax
    assert key(_model("mlp", 1, task="multilabel")[0], x) != base
    assert key(mlp, x, exporter="dynamo") != base
    assert key(mlp, x, opset=17) != base
    assert key(mlp, x[:3]) != base
    assert key(mlp, x.double()) != base
    gelu = models.Exported(nn.Sequential(mlp.net[0], models.mlp(13, 3, [32, 32], "gelu", 0.0)),
                           "classification").eval()
    assert key(gelu, x) != base
    user, ux = _model("user", 1)
    ukey = key(user, ux)
    assert key(user, ux + 1) != ukey         # a user model: the example's values too
    assert key(user, ux, extra_key={"model.py": "0" * 64}) != ukey
    user.net.scale = 0.25                    # a plain attribute forward reads
    assert key(user, ux) != ukey
    user.net.scale = object()
    with pytest.raises(graphkey.Uncacheable, match="attribute net.scale"):
        key(user, ux)
    user.net.scale = 0.5
    sx = torch.randn(4, 5)
    scaled = [graphkey.graph_key(Scaled(a).eval(), sx, output_names=["y"], exporter="legacy",
                               opset=None)[0] for a in (0.5, 0.5, 0.25)]
    assert scaled[0] == scaled[1] != scaled[2]
    handle = user.net.a.register_forward_hook(lambda m, i, o: o * 2)
    data, note = relink.export_onnx(user, ux, output_names=user.output_names, metadata={},
                                    exporter="legacy", graphs_dir=str(tmp_path))
    handle.remove()
    assert note == "graph exported: not cacheable: module net.a has forward hooks"
    assert not list(tmp_path.iterdir())


def test_a_damaged_entry_is_a_miss_and_is_replaced(tmp_path):
    w1, x = _model("mlp", 1)
    relink.export_onnx(w1, x, output_names=w1.output_names, metadata=META, exporter="legacy",
                       graphs_dir=str(tmp_path))
    (path,) = tmp_path.iterdir()
    good = path.read_bytes()
    key = path.name[: -len(relink.SUFFIX)]
    for n in range(len(good)):               # every truncation parses as "no entry"
        assert relink.parse_entry(good[:n], key)[0] is None
    flipped = bytearray(good)
    flipped[-20] ^= 0xFF                     # inside the skeleton: the checksum catches it
    header = json.loads(good.split(b"\n")[1])
    header["links"][0][2] = "net.1.4.bias"          # a lying link, checksum intact
    lying = relink.MAGIC + json.dumps(header).encode() + b"\n" + good.split(b"\n", 2)[2]
    w2, _ = _model("mlp", 2)
    for damage, said in [(good[: len(good) // 2], "damaged"), (bytes(flipped), "damaged"),
                         (b"garbage", "not a graph cache file"), (lying, "does not fit")]:
        path.write_bytes(damage)
        (data, note), fresh = _both(w2, x, "legacy", tmp_path)
        assert data == fresh
        assert note.startswith(f"graph exported: graph cache entry {said}"), note
        assert path.read_bytes() != damage and relink.parse_entry(path.read_bytes(), key)[0]
    assert _both(w2, x, "legacy", tmp_path)[0][1].startswith("graph relinked")


def test_a_cli_rebuild_relinks_with_the_bytes_of_a_build_from_scratch(tmp_path, monkeypatch):
    shared = tmp_path / "graphs"                        # as ~/.cache/s2build/graphs
    env = {"S2BUILD_GRAPH_CACHE": str(shared)}
    monkeypatch.setenv("S2BUILD_GRAPH_CACHE", str(shared))
    d = make_project(tmp_path / "toy", epochs=2)
    p = run(["-v", "build"], d, check=0, env=env)
    assert "graph exported: cached for relinking" in p.stdout, p.stdout
    assert not (d / ".s2build" / "graphs").exists()
    # another project of this user relinks its first build from the shared folder, with the
    # bytes of a project that keeps its own graph cache and exports
    other = make_project(tmp_path / "other", epochs=2)
    alone = make_project(tmp_path / "alone", epochs=2)
    assert "graph relinked" in run(["-v", "build"], other, check=0, env=env).stdout
    p = run(["-v", "build"], alone, check=0, env={"S2BUILD_GRAPH_CACHE": "project"})
    assert "cached for relinking" in p.stdout and (alone / ".s2build" / "graphs").is_dir()
    assert sha256(other / "build" / "toy.onnx") == sha256(alone / "build" / "toy.onnx")
    relabel(d / "data" / "a.csv", 3)
    p = run(["-v", "build"], d, check=0, env=env)
    assert "toy: built" in p.stdout and "graph relinked" in p.stdout, p.stdout
    relinked = sha256(d / "build" / "toy.onnx")
    (entry,) = shared.iterdir()
    entry.write_bytes(entry.read_bytes()[:-7])          # damaged, and no cached artifact:
    for name in ("cache", "state.json"):                # the same key is built from scratch
        target = d / ".s2build" / name
        os.unlink(target) if target.is_file() else __import__("shutil").rmtree(target)
    p = run(["-v", "build"], d, check=0, env=env)
    assert "graph exported: graph cache entry damaged" in p.stdout, p.stdout
    assert sha256(d / "build" / "toy.onnx") == relinked
    # gc: the current entry stays; a damaged one goes; another toolchain's goes from a
    # project's own folder, and from the shared one once unused for SHARED_STALE_DAYS
    current = entry.read_bytes()
    header = json.loads(current.split(b"\n")[1])
    header["toolchain"] = dict(header["toolchain"], torch="0.0.1")
    old = relink.MAGIC + json.dumps(header).encode() + b"\n" + current.split(b"\n", 2)[2]
    other_tc = shared / ("a" * 64 + relink.SUFFIX)
    other_tc.write_bytes(old.replace(header["key"].encode(), b"a" * 64))
    (shared / ("b" * 64 + relink.SUFFIX)).write_bytes(b"s2build-graph 1\n{")
    own = d / ".s2build" / "graphs"
    own.mkdir()
    shutil.copy(other_tc, own / other_tc.name)
    from s2build.project import config
    from s2build.store import gc
    project = config.load(str(d / "s2build.yaml"))
    assert sorted(w for _n, _s, w in gc.collect(project, 2 ** 31, dry_run=True).graphs) == \
        ["another toolchain", "truncated header"]       # the shared one was used just now
    assert len(list(shared.iterdir())) == 3             # a dry run removes nothing
    days = relink.SHARED_STALE_DAYS + 1
    os.utime(other_tc, (time.time() - days * 86400,) * 2)
    assert sorted(w for _n, _s, w in gc.collect(project, 2 ** 31).graphs) == \
        ["another toolchain", "another toolchain", "truncated header"]
    assert sorted(p.name for p in shared.iterdir()) == [entry.name]
    gc.clean(project, [], cache=True)
    assert not own.exists() and entry.exists()          # the shared folder is the user's

"""export_onnx: real torch modules, real exporters, real onnxruntime.

The dynamo exporter costs seconds per call, so each model is exported once per session
(module-scoped fixtures) and the two reproducibility subprocesses run concurrently.
"""

import hashlib
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from s2build.errors import BuildError  # noqa: E402
from s2build.compile.export import export_onnx  # noqa: E402
from s2build.compile.verify import assert_no_leaks, verify_onnx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METADATA = {"s2build.target": "demo", "s2build.key": "abc123", "a.first": "1"}

# Written into two different tmp dirs and run from there: same weights, different absolute paths.
SCRIPT = """\
import hashlib, json, os, sys
import torch
from s2build.compile.export import export_onnx


class Net(torch.nn.Module):  # forward() defined here, so raw stack traces name this file
    def __init__(self):
        super().__init__()
        self.seq = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, x):
        return self.seq(x)


torch.manual_seed(0)
net = Net().eval()
x = torch.randn(2, 4)
meta = {"s2build.target": "demo", "s2build.key": "abc123", "a.first": "1"}
out = {}
for exporter in ("dynamo", "legacy"):
    data = export_onnx(net, x, output_names=["output"], metadata=meta, exporter=exporter)
    for leak in (os.path.abspath(__file__), os.getcwd(), sys.prefix):
        assert leak.encode() not in data, leak
    out[exporter] = hashlib.sha256(data).hexdigest()
print(json.dumps(out))
"""


class Net(torch.nn.Module):
    """The same network as SCRIPT's, defined at another path under another module name."""

    def __init__(self):
        super().__init__()
        self.seq = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, x):  # x: [batch, 4] -> [batch, 3]
        return self.seq(x)


def _seeded_net():
    """SCRIPT's network, with the same weights and example input."""
    torch.manual_seed(0)
    net = Net().eval()
    return net, torch.randn(2, 4)


class TwoHeads(torch.nn.Module):
    """Defined in this test file, so the dynamo exporter's stack traces name its path."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, x):  # x: [batch, 4] -> ([batch, 3], [batch, 3])
        logits = self.body(x)
        return logits, torch.softmax(logits, dim=-1)


@pytest.fixture(scope="module")
def net_exports():
    net, x = _seeded_net()
    return {e: export_onnx(net, x, output_names=["output"], metadata=METADATA, exporter=e)
            for e in ("dynamo", "legacy")}


@pytest.fixture(scope="module")
def two_heads():
    torch.manual_seed(1)
    net = TwoHeads().eval()
    x = torch.randn(3, 4)
    data = export_onnx(net, x, output_names=["logits", "probabilities"], metadata={"k": "v"})
    return net, data


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_export_is_self_contained_with_batch_axis_and_sorted_metadata(net_exports, exporter):
    model = onnx.load_model_from_string(net_exports[exporter])
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [(p.key, p.value) for p in model.metadata_props] == sorted(METADATA.items())
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    for node in model.graph.node:
        assert not node.metadata_props and not node.doc_string
    net, _ = _seeded_net()
    report = verify_onnx(net_exports[exporter], net, torch.randn(17, 4))  # batch != export batch
    assert report.n_rows == 17 and report.argmax_agreement == 1.0


def test_tuple_outputs_and_no_leaked_paths(two_heads):
    net, data = two_heads
    model = onnx.load_model_from_string(data)
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    assert [(p.key, p.value) for p in model.metadata_props] == [("k", "v")]
    assert_no_leaks(data, [str(ROOT), __file__, "test_export", sys.prefix, os.getcwd(),
                           "stack_trace", "pkg.torch", "TwoHeads"])
    report = verify_onnx(data, net, torch.randn(5, 4))
    assert report.max_abs_diff <= report.tolerance


def test_byte_identical_across_processes_and_directories(tmp_path, net_exports):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for sub in ("a", "deeper/dir/b"):
        workdir = tmp_path / sub
        workdir.mkdir(parents=True)
        (workdir / "make_net.py").write_text(SCRIPT)
        procs.append(subprocess.Popen([sys.executable, "make_net.py"], cwd=workdir, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert stderr == ""  # exporter noise is silenced
        assert len(stdout.splitlines()) == 1, stdout
        results.append(json.loads(stdout))
    for sub in ("a", "deeper/dir/b"):  # nothing left behind in the working directory
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == ["make_net.py"]
    in_process = {e: hashlib.sha256(b).hexdigest() for e, b in net_exports.items()}
    assert results[0] == results[1] == in_process


def test_export_restores_logging_and_warning_state(net_exports):
    # The fixture already exported; state after it must be the interpreter's normal state.
    assert logging.root.manager.disable == logging.NOTSET
    before = list(warnings.filters)
    net, x = _seeded_net()
    export_onnx(net, x, output_names=["output"], metadata={}, exporter="legacy")
    assert warnings.filters == before
    assert logging.root.manager.disable == logging.NOTSET


def test_bad_arguments_raise_build_error():
    net, x = _seeded_net()
    with pytest.raises(BuildError, match="unknown exporter"):
        export_onnx(net, x, output_names=["output"], metadata={}, exporter="tvm")
    with pytest.raises(BuildError, match="batch >= 2"):
        export_onnx(net, x[:1], output_names=["output"], metadata={}, exporter="legacy")
    with pytest.raises(BuildError, match="str to str"):
        export_onnx(net, x, output_names=["output"], metadata={"epochs": 3}, exporter="legacy")
    with pytest.raises(BuildError, match="outputs"):
        export_onnx(net, x, output_names=["logits", "probabilities"], metadata={}, exporter="legacy")


def test_exporter_failure_becomes_build_error():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom in user code")

    with pytest.raises(BuildError, match="legacy.*boom in user code"):
        export_onnx(Broken(), torch.zeros(2, 4), output_names=["output"], metadata={}, exporter="legacy")


def test_importing_is_cheap():
    code = ("import sys, s2build.compile.export, s2build.compile.verify; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

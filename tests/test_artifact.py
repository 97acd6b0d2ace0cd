"""compile/artifact: one reader of ONNX artifacts; it agrees with onnx and onnxruntime, and a
damaged file is an ArtifactError, never a crash; no other module opens an artifact itself."""

import ast
import json

import numpy as np
import pytest

from s2build.compile import artifact

from conftest import ROOT


@pytest.fixture(scope="module", params=["legacy", "dynamo"])
def exported(request):
    import torch

    from s2build.compile import export
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            out = self.net(x)
            return out, torch.softmax(out, dim=-1)

    meta = {"s2build.task": "classification", "s2build.classes": json.dumps(["a", "b", "c"]),
            "s2build.features": json.dumps([f"f{i}" for i in range(16)]),
            "s2build.input_shape": "[1, 4, 4]", "s2build.metrics": '{"accuracy":0.5}',
            "s2build.build_key": "k" * 64, "s2build.note": "ünïcode"}
    data = export.export_onnx(Two().eval(), torch.zeros(3, 1, 4, 4),
                              output_names=["logits", "probabilities"], metadata=meta,
                              exporter=request.param)
    return data, meta


def test_the_reader_agrees_with_onnx_and_onnxruntime(exported, tmp_path):
    import onnx
    import onnxruntime as ort
    data, meta = exported
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    a = artifact.Artifact(str(path))
    assert a.meta == {p.key: p.value for p in onnx.load(str(path)).metadata_props} == meta
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert a.input_name == sess.get_inputs()[0].name
    assert a.input_shape == sess.get_inputs()[0].shape
    assert a.output_names == [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]
    assert (a.task, a.classes, a.build_key) == ("classification", ["a", "b", "c"], "k" * 64)
    assert a.row_shape == [1, 4, 4] and a.metrics == {"accuracy": 0.5}
    assert a._session is None                        # metadata never needs onnxruntime
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)   # flat rows
    want = sess.run(None, {a.input_name: x.reshape(5, 1, 4, 4)})
    got = a.run(x)
    assert [g.shape for g in got] == [(5, 3), (5, 3)]
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(a.outputs(x), want[0])
    assert a.class_index("b") == 1 and a.class_index("z") is None


def test_a_damaged_artifact_is_an_error_not_a_crash(exported, tmp_path):
    data, _meta = exported
    path = tmp_path / "m.onnx"
    for cut in list(range(0, 64)) + list(range(64, len(data), max(1, len(data) // 150))):
        path.write_bytes(data[:cut])
        try:
            a = artifact.Artifact(str(path))
        except artifact.ArtifactError:
            assert artifact.metadata(str(path)) is None
            continue
        assert isinstance(a.meta, dict)              # a prefix that still parses
    path.write_bytes(b"\xff" * 40)
    assert artifact.metadata(str(path)) is None
    assert artifact.metadata(str(tmp_path / "missing.onnx")) is None


def test_no_other_module_opens_an_artifact():
    """Reading artifacts is compile/artifact.py's job; export writes them and verify checks the
    exporter's bytes before they are an artifact."""
    allowed = {"compile/artifact.py", "compile/export.py", "compile/verify.py"}
    offenders = []
    for path in sorted((ROOT / "s2build").rglob("*.py")):
        rel = str(path.relative_to(ROOT / "s2build"))
        if rel in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = node.attr if isinstance(node, ast.Attribute) else \
                node.id if isinstance(node, ast.Name) else None
            if name in ("InferenceSession", "metadata_props", "get_modelmeta") or \
                    (name == "load" and isinstance(node, ast.Attribute)
                     and isinstance(node.value, ast.Name) and node.value.id == "onnx"):
                offenders.append(f"{rel}:{node.lineno}: {name}")
    assert offenders == []

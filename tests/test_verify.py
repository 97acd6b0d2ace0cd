"""verify_onnx and assert_no_leaks on real exports (legacy exporter: fast) and real onnxruntime."""

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")

from s2build.errors import VerificationError  # noqa: E402
from s2build.compile.export import export_onnx  # noqa: E402
from s2build.compile.verify import VerifyReport, assert_no_leaks, verify_onnx  # noqa: E402


class Scores(torch.nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, classes))

    def forward(self, x):  # x: [batch, 4] -> ([batch, classes], [batch, classes])
        logits = self.net(x)
        return logits, torch.softmax(logits, dim=-1)


def _export(net, output_names):
    return export_onnx(net, torch.randn(2, 4), output_names=output_names, metadata={}, exporter="legacy")


@pytest.fixture(scope="module")
def scores():
    torch.manual_seed(0)
    net = Scores().eval()
    return net, _export(net, ["logits", "probabilities"])


def test_faithful_export_passes(scores):
    net, data = scores
    report = verify_onnx(data, net, torch.randn(64, 4))
    assert isinstance(report, VerifyReport)
    assert report.n_rows == 64 and report.argmax_agreement == 1.0
    assert 0.0 <= report.max_abs_diff <= report.tolerance and report.tolerance >= 1e-4
    assert report.seconds > 0


def test_tampered_weight_fails_parity_naming_the_output(scores):
    net, data = scores
    model = onnx.load_model_from_string(data)
    last_bias = next(t for t in model.graph.initializer if list(t.dims) == [3])
    values = onnx.numpy_helper.to_array(last_bias) + np.float32(0.01)
    last_bias.CopyFrom(onnx.numpy_helper.from_array(values, last_bias.name))
    with pytest.raises(VerificationError, match="output 'logits': max.*exceeds tolerance"):
        verify_onnx(model.SerializeToString(), net, torch.randn(8, 4))


def test_invalid_model_fails_the_checker(scores):
    net, data = scores
    model = onnx.load_model_from_string(data)
    model.graph.node[0].input[0] = "no_such_tensor"
    with pytest.raises(VerificationError, match="^ONNX checker: "):
        verify_onnx(model.SerializeToString(), net, torch.randn(4, 4))
    with pytest.raises(VerificationError, match="^ONNX checker: "):
        verify_onnx(b"not an onnx file", net, torch.randn(4, 4))


def test_output_count_mismatch_fails(scores):
    net, _ = scores
    single = _export(net.net, ["logits"])
    with pytest.raises(VerificationError, match="1 outputs.*returns 2"):
        verify_onnx(single, net, torch.randn(4, 4))


def test_argmax_agreement_only_for_multi_column_2d_first_output():
    torch.manual_seed(0)
    net = Scores(classes=1).eval().net
    report = verify_onnx(_export(net, ["score"]), net, torch.randn(16, 4))
    assert report.argmax_agreement is None and report.n_rows == 16


def test_nan_difference_fails():
    class Nan(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    class Same(torch.nn.Module):
        def forward(self, x):
            return x * 2.0

    data = _export(Same(), ["output"])
    with pytest.raises(VerificationError, match="output 'output'"):
        verify_onnx(data, Nan(), torch.randn(4, 4))


def test_assert_no_leaks(scores):
    _, data = scores
    assert_no_leaks(data, ["/home/someone/project", ""])  # absent and empty strings pass
    with pytest.raises(VerificationError, match=r"leaks .probabilities. in model.graph\[main_graph\].node"):
        assert_no_leaks(data, ["/nowhere", "probabilities"])


def test_inputs_of_the_wrong_shape_fail_cleanly(scores):
    net, data = scores
    with pytest.raises(VerificationError, match="torch module failed"):
        verify_onnx(data, net, torch.randn(4, 5))


def _with(data, change):
    """The model of `data` with `change(model)` applied, serialized again."""
    model = onnx.load_model_from_string(data)
    change(model)
    return model.SerializeToString()


def _meta(model, key, value):
    p = model.metadata_props.add()
    p.key, p.value = key, value


def test_leak_check_matches_whole_paths_only(scores):
    """/app is not leaked by data/apple/..., /root not by data/roots.csv (issue 10, finding 13)."""
    _, data = scores
    harmless = _with(data, lambda m: (_meta(m, "s2build.sources", '{"data/apple/a.csv":"ab"}'),
                                      _meta(m, "s2build.holdout", '{"data/roots.csv":"cd"}'),
                                      setattr(m.graph.node[0], "name", "/apple/Gemm"),
                                      setattr(m.graph, "doc_string", "see /approot/x and app/x")))
    assert_no_leaks(harmless, ["/app", "/root", "/"])
    for value in ('{"root":"/app"}', "/app/data/a.csv:12", "/app", "at /root/x.py line 3"):
        leaky = _with(data, lambda m: _meta(m, "k", value))
        with pytest.raises(VerificationError, match=r"leaks '/(app|root)' in model\.metadata_props"):
            assert_no_leaks(leaky, ["/app", "/root"])


def test_leak_check_looks_at_every_name_and_doc_string(scores):
    _, data = scores
    places = {
        "node name": lambda m: setattr(m.graph.node[0], "name", "/app/net/Gemm"),
        "node doc": lambda m: setattr(m.graph.node[1], "doc_string", "File /app/model.py, line 3"),
        "graph doc": lambda m: setattr(m.graph, "doc_string", "/app/"),
        "initializer": lambda m: setattr(m.graph.initializer[0], "name", "/app/w"),
        "value_info": lambda m: m.graph.value_info.add().CopyFrom(
            onnx.helper.make_tensor_value_info("/app/v", onnx.TensorProto.FLOAT, [1])),
        "output": lambda m: setattr(m.graph.output[0], "doc_string", "/app"),
        "function": lambda m: m.functions.append(onnx.helper.make_function(
            "custom", "f", ["a"], ["b"], [onnx.helper.make_node("Identity", ["a"], ["b"],
                                                                name="/app/id")], [])),
    }
    for what, change in places.items():
        with pytest.raises(VerificationError, match="leaks '/app'"):
            assert_no_leaks(_with(data, change), ["/app/"])
    assert_no_leaks(data, ["/app"])

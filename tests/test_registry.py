"""registry: one table of tasks, losses and metrics; a gate computes the value the build
recorded; user metrics declare their direction, and dev builds converge that way."""

import io
import json
import textwrap

import numpy as np
import pytest

from s2build.errors import ConfigError
from s2build.project import config, registry

from conftest import ROOT, run

# --- gates see the value the build recorded (every built-in metric and task) ---------------

TARGETS = {
    # name: (loader, metrics)
    "cls": ("{format: npz, task: classification}", ["accuracy", "f1", "error_rate"]),
    "reg1": ("{format: npz, task: regression}", ["mse", "mae", "r2"]),
    "reg2": ("{format: npz, task: regression}", ["mse", "mae", "r2"]),     # two outputs
    "ml": ("{format: npz, task: multilabel}", ["accuracy"]),
}
CASES = [(t, m) for t, (_l, ms) in TARGETS.items() for m in ms]
USER = {"error_rate": '{name: "m.py:error_rate", higher_is_better: false}'}   # a user metric


def _npz(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _data(rng, n=120):
    x = rng.normal(size=(n, 3)).astype(np.float32)
    s = x[:, 0] + 0.5 * x[:, 1]
    return x, {
        "cls": (np.digitize(s, [-0.5, 0.5])).astype(np.int64),               # 3 classes
        "reg1": (2 * s + 1)[:, None].astype(np.float32),
        # two outputs on very different scales: a pooled mean would make r2 look near 1
        "reg2": np.stack([s, 100 + 10 * x[:, 2] + s], axis=1).astype(np.float32),
        "ml": np.stack([s > 0, x[:, 2] > 0], axis=1).astype(np.float32),
    }


@pytest.fixture(scope="module")
def tested(tmp_path_factory):
    """A four-target project, built and tested once: (state record, `s2build test --json`)."""
    d = tmp_path_factory.mktemp("gates")
    (d / "m.py").write_text("def error_rate(o, t):\n"
                            "    return float((o.argmax(1) != t).float().mean())\n")
    x, ys = _data(np.random.default_rng(0))
    lines = ["targets:"]
    for name, (loader, metrics) in TARGETS.items():
        (d / f"{name}.npz").write_bytes(_npz(x=x, y=ys[name]))
        lines += [f"  {name}:", f"    sources: [{name}.npz]", f"    loader: {loader}",
                  "    model: {type: mlp, hidden: [16]}",
                  "    train: {epochs: 4, batch_size: 16, lr: 0.01}",
                  "    holdout: {fraction: 0.3}", "    export: {exporter: legacy}",
                  f"    metrics: [{', '.join(USER.get(m, m) for m in metrics)}]", "    specs:"]
        for m in metrics:
            bound = "> -1000000"
            lines += [f"      - name: {m} gate", f"        gate: {m} {bound}"]
    (d / "s2build.yaml").write_text("\n".join(lines) + "\n")
    p = run(["test", "--json"], d, check=0)
    doc = json.loads(p.stdout)
    state = json.loads((d / ".s2build" / "state.json").read_text())
    return d, state, doc


@pytest.mark.parametrize("target, metric", CASES)
def test_a_gate_computes_the_value_the_build_recorded(tested, target, metric):
    from s2build.compile.artifact import Artifact
    d, state, doc = tested
    recorded = state["targets"][target]["metrics"][metric]
    (gate,) = [s for s in doc["specs"] if s["target"] == target and s["name"] == f"{metric} gate"]
    value = gate["details"]["value"]
    # The build evaluates torch's outputs, the gate onnxruntime's: the same function on floats
    # that agree to float32 rounding (the parity check bounds it far below 1e-5).
    assert value == pytest.approx(recorded, rel=1e-5, abs=1e-6), (target, metric)
    # ... and the artifact's metadata, printed with 6 significant digits, says the same
    meta = Artifact(str(d / "build" / f"{target}.onnx")).metrics[metric]
    assert float(f"{value:.6g}") == pytest.approx(meta, rel=2e-6, abs=1e-9)
    if target == "reg2" and metric == "r2":
        assert recorded < 0.99         # the per-output r2, not one pooled over both scales


def test_r2_averages_the_outputs_own_fits():
    from s2build.compile import metrics
    y = np.array([[0.0, 100.0], [1.0, 110.0], [2.0, 120.0], [3.0, 130.0]])
    out = y + np.array([[0.5, 0.0], [-0.5, 0.0], [0.5, 0.0], [-0.5, 0.0]])
    # column 0: 1 - 1.0 / 5.0 = 0.8; column 1: exact (1.0); mean 0.9
    assert metrics.r2(out, y) == pytest.approx(0.9)
    assert metrics.r2(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 1.0   # constant, exact
    assert metrics.accuracy(np.array([[1.0, -1.0], [-1.0, 1.0]]), np.array([[1.0, 1.0],
                                                                           [0.0, 1.0]])) == 0.75


# --- one table -----------------------------------------------------------------------------

def test_one_table_serves_config_scoring_and_specs():
    from s2build.compile import scoring
    from s2build.specs import parse
    assert config.TASKS == tuple(registry.TASKS)
    assert sorted(scoring.ROW_LOSSES) == sorted(registry.LOSSES)
    for task in registry.TASKS.values():
        assert task.default_loss in registry.losses_for(task.name)
        assert all(m in registry.metrics_for(task.name) for m in task.default_metrics)
    for m in registry.METRICS.values():
        assert callable(registry.implementation(m))
    for name in ("BUILTIN_LOSSES", "BUILTIN_METRICS", "DEFAULT_LOSS", "DEFAULT_METRICS"):
        assert not hasattr(config, name)
    assert not hasattr(parse, "TASK_METRICS") and not hasattr(scoring, "METRIC_TASKS")


# --- user metrics declare their direction --------------------------------------------------

def _load(tmp_path, metrics_yaml):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n")
    (tmp_path / "metrics.py").write_text("def error_rate(o, t):\n"
                                         "    return float((o.argmax(1) != t).float().mean())\n")
    (tmp_path / "s2build.yaml").write_text(
        "targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n"
        f"    metrics: {metrics_yaml}\n")
    return config.load(str(tmp_path / "s2build.yaml")).targets["t"]


def test_direction_lookup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = _load(tmp_path, '[accuracy, {name: "metrics.py:error_rate", higher_is_better: false}]')
    assert t.config["metrics"] == ["accuracy", {"name": "metrics.py:error_rate",
                                                "higher_is_better": False}]
    assert registry.higher_is_better(t.config, "error_rate") is False
    assert registry.higher_is_better(t.config, "accuracy") is True
    assert registry.higher_is_better(t.config, "mse") is False
    assert registry.higher_is_better(t.config, "elsewhere") is None
    assert [r[2] for r in t.user_refs()] == ["metrics.py"]
    from s2build.engine import incremental
    assert incremental._main_metric(t, {"error_rate": 0.1, "accuracy": 0.9}) == \
        ("error_rate", 0.1, False)


@pytest.mark.parametrize("metrics_yaml, message", [
    ('["metrics.py:error_rate"]',
     's2build.yaml:5:15: metric \'metrics.py:error_rate\': say which way is better (write '
     '{name: "metrics.py:error_rate", higher_is_better: true} (or false, for an error or a '
     'loss))'),
    ('[{name: "metrics.py:error_rate"}]',
     "s2build.yaml:5:15: metric 'metrics.py:error_rate': missing 'higher_is_better' (say which "
     "way is better: true (like accuracy) or false (like an error rate))"),
    ('[{name: accuracy, higher_is_better: false}]',
     "s2build.yaml:5:22: metric 'accuracy': a mapping names a user metric (write just "
     "'accuracy': a built-in metric's direction is known)"),
    ('[{name: "metrics.py:error_rate", higher_is_better: "no"}]',
     "s2build.yaml:5:65: targets.t.metrics.0.higher_is_better: expected true or false, got 'no'"),
    ('[{name: "metrics.py:error_rate", higher: false}]',
     "s2build.yaml:5:47: unknown key 'higher' (known keys: higher_is_better, name)"),
    ('[accuracy, accuracy]',
     "s2build.yaml:5:25: metric 'accuracy' is reported as 'accuracy', like the metric at "
     "s2build.yaml:5:15 (give each metric its own name)"),
    ('[mse]', "s2build.yaml:5:15: metric 'mse' does not fit task 'classification' (use one "
     "of: accuracy, f1)"),
])
def test_user_metric_errors_at_their_yaml_location(tmp_path, monkeypatch, metrics_yaml, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, metrics_yaml)
    assert str(e.value) == message


def test_the_documented_example_declares_a_user_metric(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "s2build.yaml.example").read_text()
    assert "higher_is_better:" in text
    block = [line.strip().lstrip("# ").strip() for line in text.splitlines()
             if "higher_is_better:" in line][0]
    metrics_yaml = block.split("metrics:", 1)[1].split("#")[0].strip()
    t = _load(tmp_path, metrics_yaml)
    assert registry.higher_is_better(t.config, "error_rate") is False


# --- a dev build converges the way the metric is better ------------------------------------

DEV = """\
targets:
  toy:
    sources: [data/*.csv]
    loader: {{format: csv, label: y, task: classification, classes: 2}}
    model: {{type: mlp, hidden: [32]}}
    train: {{epochs: 2, batch_size: 16, lr: 0.002, seed: 0}}
    holdout: {{sources: [holdout/*.csv]}}
    export: {{exporter: legacy}}
    metrics: [{{name: "metrics.py:error_rate", higher_is_better: {up}}}]
"""


def test_a_dev_build_converges_the_way_a_user_metric_is_better(tmp_path):
    """The parent is undertrained (error_rate 0.4); relabelling a row it gets right forces
    fine-tuning steps, during which the holdout error rate falls. Declared lower-is-better,
    that is convergence; read as higher-is-better (the old guess from the name), each check
    fails until the fine-tune gives up for a full build."""
    from toy import make_project, predict, relabel
    from s2build.compile.artifact import Artifact
    d = make_project(tmp_path / "toy")
    (d / "s2build.yaml").write_text(DEV.format(up="false"))
    (d / "metrics.py").write_text("def error_rate(o, t):\n"
                                  "    return float((o.argmax(1) != t).float().mean())\n")
    run(["build"], d, check=0)
    before = Artifact(str(d / "build" / "toy.onnx")).metrics["error_rate"]
    lines = (d / "data" / "a.csv").read_text().splitlines()[1:]
    i = [k for k, line in enumerate(lines) if line.endswith(",1") and predict(d, line) == "1"][0]
    relabel(d / "data" / "a.csv", i)
    r = run(["build", "--dev"], d, check=0)
    assert "not converged" not in r.stderr, r.stderr
    art = Artifact(str(d / "build" / "toy.onnx"))
    assert art.meta["s2build.mode"] == "incremental"
    assert art.metrics["error_rate"] < before - 0.01       # better, i.e. lower

"""blame beyond classification, through the real CLI: regression (rows that raise or lower a
prediction, checked by retraining with them upweighted), multilabel, and gates."""

import json

import numpy as np
import pytest

from conftest import run

YAML = ("targets:\n  reg:\n    sources: [data/rows.csv]\n"
        "    loader: {label: y, task: regression}\n    model: {hidden: [16]}\n"
        "    train: {epochs: 20}\n    holdout: {fraction: 0.2, seed: 0}\n"
        "    export: {exporter: legacy}\n    specs:\n      - name: holdout mse\n"
        "        gate: mse <= 100\n")


def _regression(d, extra=()):
    """y = 2a + b^2 + noise, 300 rows; `extra` lines appended (upweighted copies)."""
    (d / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = 2 * x[:, 0] + x[:, 1] ** 2 + 0.3 * rng.normal(size=300)
    lines = ["a,b,c,y"] + [f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{v:.4f}" for r, v in zip(x, y)]
    (d / "data" / "rows.csv").write_text("\n".join(lines + list(extra)) + "\n")
    (d / "s2build.yaml").write_text(YAML)
    return lines


def _blame(d, *args):
    return json.loads(run(["blame", "reg", *args, "--json"], d, check=0).stdout)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    d = tmp_path_factory.mktemp("blame") / "reg"
    lines = _regression(d)
    return d, lines


def test_regression_blame_names_rows_that_raise_the_prediction_when_upweighted(regression,
                                                                             tmp_path):
    d, lines = regression
    out = _blame(d, "--input", "data/rows.csv:50", "-k", "10")
    assert out["task"] == "regression" and out["output"] == "y" and out["exact"]
    assert all(r["influence"] > 0 for r in out["rows"])
    assert all(r["influence"] < 0 for r in out["lowering"])
    line = lambda origin: lines[int(origin.rsplit(":", 1)[1]) - 1]     # noqa: E731
    pred = {}
    for how in ("rows", "lowering"):               # three more copies of each blamed row
        _regression(tmp_path / how, [line(r["origin"]) for r in out[how]] * 3)
        pred[how] = _blame(tmp_path / how, "--input", "data/rows.csv:50", "-k", "1")["prediction"]
    assert pred["rows"] > out["prediction"] > pred["lowering"], (pred, out["prediction"])
    text = run(["blame", "reg", "--input", "data/rows.csv:50", "-k", "2"], d, check=0).stdout
    assert text.splitlines()[0].startswith("data/rows.csv:50: predicted y = ")
    assert "training rows that most raised it" in text and "most lowered it" in text
    p = run(["blame", "reg", "--input", "data/rows.csv:50", "--output", "z"], d, check=2)
    assert "--output z: 'reg' has no output of that name (outputs: y)" in p.stderr


def test_a_gate_blames_the_rows_that_hurt_the_holdout_rows_it_counts(regression):
    d, _lines = regression
    out = _blame(d, "--spec", "holdout mse", "-k", "5")
    assert out["gate"] == "holdout mse" and out["task"] == "regression"
    assert len(out["failing"]) >= 5 and all(o.startswith("data/rows.csv:") for o in out["failing"])
    assert len(out["rows"]) == 5 and out["rows"][0]["harm"] >= out["rows"][-1]["harm"]
    text = run(["blame", "reg", "--spec", "holdout mse", "-k", "3"], d, check=0).stdout
    assert text.startswith("gate 'holdout mse': ") and "most raised their loss" in text


def test_multilabel_blame(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, :3] > 0).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    (tmp_path / "s2build.yaml").write_text(
        "targets:\n  ml:\n    sources: [rows.npz]\n"
        "    loader: {format: npz, task: multilabel}\n    model: {hidden: [16]}\n"
        "    train: {epochs: 10}\n    export: {exporter: legacy}\n")
    run(["build"], tmp_path, check=0)
    p = run(["blame", "ml", "--input", "rows.npz[3]", "-k", "4", "--json"], tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["task"] == "multilabel" and out["exact"] and len(out["rows"]) == 4
    assert set(out["prediction"]) <= {"output 0", "output 1", "output 2"}
    assert all(r["label"].startswith("[") for r in out["rows"])

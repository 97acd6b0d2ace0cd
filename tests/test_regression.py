"""Regression targets in their own units (issue 15, section 7): a built-in network learns
standardised targets and ends in models.Unstandardize, so a target in grams trains as one in
kilograms does, its artifact gives grams, and its losses and training dynamics stay finite."""

import csv
import json
import re
import textwrap

import numpy as np
import pytest

from conftest import EXAMPLES, run

ort = pytest.importorskip("onnxruntime")

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "island", "sex"]


def penguins_mass(tmp_path, unit):
    """The penguins rows with a body mass, as `unit` ("g" as shipped, or "kg"), one CSV."""
    d = tmp_path / unit
    (d / "data").mkdir(parents=True)
    rows = []
    for path in sorted((EXAMPLES / "penguins" / "data").glob("*.csv")):
        with open(path, newline="") as f:
            rows += [r for r in csv.DictReader(f) if r["body_mass_g"] != "NA"]
    with open(d / "data" / "mass.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FEATURES + ["mass"], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            grams = float(r["body_mass_g"])
            w.writerow(dict(r, mass=grams if unit == "g" else grams / 1000))
    (d / "s2build.yaml").write_text(textwrap.dedent(f"""\
        targets:
          mass:
            sources: [data/mass.csv]
            loader:
              format: csv
              label: mass
              task: regression
              features: [{", ".join(FEATURES)}]
              columns: {{island: category, sex: category}}
            model: {{type: mlp, hidden: [32]}}
            train: {{epochs: 30, batch_size: 16, lr: 0.003, seed: 0}}
            holdout: {{fraction: 0.25, seed: 0}}
            export: {{exporter: legacy}}
            output: build/mass.onnx
        """))
    return d, rows


def test_a_target_in_grams_trains_as_one_in_kilograms_and_the_artifact_gives_grams(tmp_path):
    built = {}
    for unit in ("g", "kg"):
        d, rows = penguins_mass(tmp_path, unit)
        p = run(["-v", "build"], d, check=0)
        assert "Warning" not in p.stderr and "overflow" not in p.stderr, p.stderr
        state = json.loads((d / ".s2build" / "state.json").read_text())
        r2 = state["targets"]["mass"]["artifact_metrics"]["r2"]
        losses = [float(x) for x in re.findall(r"epoch \d+/30 loss ([\d.e+-]+)", p.stderr)]
        assert losses and losses[-1] < 1.0, losses            # standardised units, not grams^2
        [dyn] = list((d / ".s2build").rglob("dynamics.npz"))
        with np.load(dyn) as z:
            for name in z.files:
                if z[name].dtype.kind == "f":
                    assert np.isfinite(z[name]).all(), name
        sess = ort.InferenceSession(str(d / "build" / "mass.onnx"))
        assert [i.name for i in sess.get_inputs()] == FEATURES        # the raw columns
        feeds = {k: np.asarray([r[k] for r in rows], dtype=object if k in ("island", "sex")
                               else np.float32) for k in FEATURES}
        built[unit] = r2, sess.run(None, feeds)[0][:, 0]
    (r2_g, pred_g), (r2_kg, pred_kg) = built["g"], built["kg"]
    assert r2_g > 0.7 and abs(r2_g - r2_kg) < 0.02, (r2_g, r2_kg)
    truth = np.asarray([float(r["body_mass_g"]) for r in penguins_mass(tmp_path / "t", "g")[1]])
    assert np.median(np.abs(pred_g - truth)) < 400                # grams out, not unit values
    np.testing.assert_allclose(pred_g, pred_kg * 1000, rtol=0.02)

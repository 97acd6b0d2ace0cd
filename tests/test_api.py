"""The Python API: `import s2build` builds, tests and loads artifacts in-process (a tmp copy
of the wine example, 3 epochs), results as dataclasses; importing s2build stays cheap."""

import subprocess
import sys

import pytest

import s2build

from conftest import copy_example


def test_build_test_and_load_artifact_in_process(tmp_path):
    d = copy_example("wine", tmp_path / "wine")
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("epochs: 40", "epochs: 3"))
    first = s2build.build(d)
    assert [(r.name, r.status) for r in first] == [("wine", "built")]
    r = first[0]
    assert isinstance(r, s2build.TargetResult) and r.artifact == str(d / "build" / "wine.onnx")
    assert 0 <= r.metrics["accuracy"] <= 1 and r.reasons == ["never built"]
    again = s2build.build(str(d / "s2build.yaml"))[0]
    assert again.status == "up-to-date" and again.metrics == pytest.approx(r.metrics, abs=1e-6)
    report = s2build.test(d)
    assert report.passed + report.failed == len(report.specs) > 0
    assert report.targets[0].status == "up-to-date"
    m = s2build.load_artifact(r.artifact)
    assert m.metadata["s2build.build_key"] == r.key and m.classes == ["0", "1", "2"]
    header, row = (d / "data" / "wine-1.csv").read_text().splitlines()[:2]
    values = dict(zip(header.split(","), row.split(",")))
    (pred,) = m.predict([{k: float(v) for k, v in values.items() if k != "cultivar"}])
    assert pred["prediction"] in m.classes and 0 < pred["probability"] <= 1


def test_errors_are_s2errors_and_import_stays_cheap(tmp_path):
    from s2build.errors import ConfigError
    try:
        s2build.build(tmp_path)
    except ConfigError as e:
        assert "s2build.yaml" in str(e)
    else:
        raise AssertionError("no ConfigError")
    code = "import sys, s2build; s2build.TargetResult; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

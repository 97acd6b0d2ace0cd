"""Behaviour specs through the real CLI: `s2build test` on the wine example (pass, fail, JUnit,
JSON), specs outside the build key, spec errors at their yaml location, a regression target."""

import json
import re
import textwrap

import onnx
import pytest
from junitparser import Error, Failure, JUnitXml

from conftest import copy_example, run, sha256

WINE_SPECS = ["a textbook cultivar-0 wine", "a cultivar-2 row stays cultivar 2",
              "holdout accuracy", "holdout macro F1",
              "robust to measurement noise (5% of each feature's spread)"]


def _meta(project, name="wine"):
    model = onnx.load(str(project / "build" / f"{name}.onnx"))
    return {p.key: p.value for p in model.metadata_props}


def _holdout(project):
    meta = _meta(project)
    return json.loads(meta["s2build.metrics"]), json.loads(meta["s2build.rows"])["holdout"]


def _line_of(path, text):
    """1-based line and column of the first occurrence of `text` in the file at `path`."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return n, line.index(text) + 1
    raise AssertionError(text)


def test_wine_specs_pass_with_pytest_like_lines(wine):
    p = run(["test"], wine, check=0)
    lines = p.stdout.splitlines()
    metrics, n_hold = _holdout(wine)
    assert lines[0] == "wine: up to date"
    assert lines[-1] == "5 passed, 0 failed"
    assert [l.split(" PASSED: ")[0] for l in lines[1:-1]] == [f"wine::{n}" for n in WINE_SPECS]
    assert lines[1].endswith("PASSED: predicted 0 (p=1.000)")
    assert re.fullmatch(r"wine::a cultivar-2 row stays cultivar 2 PASSED: data/wine-3.csv:46: "
                        r"predicted 2 \(p=0\.\d{3}\)", lines[2])
    assert lines[3] == (f"wine::holdout accuracy PASSED: accuracy {metrics['accuracy']:.4g} "
                        f">= 0.9 ({n_hold} holdout rows)")
    assert re.fullmatch(rf"wine::robust to .* PASSED: \d+ of {n_hold} holdout rows unchanged "
                        r"under noise 0\.05 \(seed 0\)", lines[5]), lines[5]
    assert p.stderr == ""


def test_changing_a_threshold_reruns_specs_without_training(wine):
    artifact = sha256(wine / "build" / "wine.onnx")
    key = json.loads((wine / ".s2build" / "state.json").read_text())["targets"]["wine"]["key"]
    y = wine / "s2build.yaml"
    y.write_text(y.read_text().replace("gate: accuracy >= 0.9", "gate: accuracy >= 0.999"))
    line, col = _line_of(y, "accuracy >= 0.999")
    metrics, n_hold = _holdout(wine)

    p = run(["status"], wine, check=0)                  # specs are not in the build key
    assert p.stdout.splitlines()[:-1] == ["wine: up to date"]
    p = run(["test", "--junit", "out/specs.xml"], wine, check=7)
    lines = p.stdout.splitlines()
    assert lines[0] == "wine: up to date"
    assert "building" not in p.stderr
    i = lines.index("wine::holdout accuracy FAILED")
    assert lines[i + 1] == (f"  s2build.yaml:{line}:{col}: accuracy is {metrics['accuracy']:.4g}, "
                            f"the gate requires accuracy >= 0.999 ({n_hold} holdout rows)")
    assert lines[-1] == "4 passed, 1 failed"
    assert sha256(wine / "build" / "wine.onnx") == artifact
    state = json.loads((wine / ".s2build" / "state.json").read_text())
    assert state["targets"]["wine"]["key"] == key

    xml = JUnitXml.fromfile(str(wine / "out" / "specs.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (5, 1, 0)
    (suite,) = list(xml)
    assert suite.name == "wine" and suite.tests == 5 and suite.failures == 1
    cases = {c.name: c for c in suite}
    assert sorted(cases) == sorted(WINE_SPECS)
    (failure,) = cases["holdout accuracy"].result
    assert isinstance(failure, Failure)
    assert failure.type == "gate"
    assert failure.message.startswith("accuracy is ")
    assert all(c.is_passed for n, c in cases.items() if n != "holdout accuracy")
    assert cases["holdout accuracy"].classname == "s2build.wine"


def test_a_broken_label_set_fails_the_gate(wine):
    # Relabel every row by a fixed rotation of the classes in two of the three files: the
    # network learns contradictions, and the holdout gates catch it.
    for f in ("wine-1.csv", "wine-2.csv"):
        path = wine / "data" / f
        rows = path.read_text().splitlines()
        out = [rows[0]] + [r[: r.rindex(",")] + "," + str((int(r[-1]) + 1 + i % 2) % 3)
                           for i, r in enumerate(rows[1:])]
        path.write_text("\n".join(out) + "\n")
    line, col = _line_of(wine / "s2build.yaml", "accuracy >= 0.9")
    p = run(["test", "wine"], wine, check=7)
    assert p.stdout.startswith("wine: built in ")
    lines = p.stdout.splitlines()
    i = lines.index("wine::holdout accuracy FAILED")
    assert re.fullmatch(rf"  s2build\.yaml:{line}:{col}: accuracy is 0\.\d+, the gate requires "
                        r"accuracy >= 0\.9 \(\d+ holdout rows\)", lines[i + 1]), lines[i + 1]
    assert re.fullmatch(r"\d passed, [1-5] failed", lines[-1])


def test_json_output_and_spec_kinds_on_files(wine):
    y = wine / "s2build.yaml"
    y.write_text(y.read_text() + textwrap.indent(textwrap.dedent("""\
        - name: file accuracy
          gate: accuracy >= 0.5
          over: data/wine-1.csv
        - name: wrong expectation
          example: {file: data/wine-3.csv, line: 45, expect: 1}
        - name: proline dominates
          invariance: {set: {proline: 100000}}
          over: data/wine-*.csv
        - name: typo in a feature
          invariance: {set: {magnesum: 100}}
    """), "      "))
    p = run(["test", "--json"], wine, check=3)     # a spec that cannot run: the yaml's fault
    doc = json.loads(p.stdout)
    assert (doc["passed"], doc["failed"]) == (6, 3)
    assert [t["outcome"] for t in doc["targets"]] == ["up-to-date"]
    specs = {s["name"]: s for s in doc["specs"]}
    assert specs["file accuracy"]["passed"]
    assert re.fullmatch(r"accuracy (1|0\.\d+) >= 0\.5 \(60 rows of data/wine-1\.csv\)",
                        specs["file accuracy"]["message"])
    assert re.fullmatch(r"data/wine-3\.csv:45: predicted 2 \(p=\d\.\d{3}\), expected 1",
                        specs["wrong expectation"]["message"])
    m = specs["proline dominates"]["message"]
    assert re.fullmatch(r"\d+ of 178 rows of data/wine-\*\.csv changed class under "
                        r"proline = 100000 \(at most 0 may\): data/wine-\d\.csv:\d+ \(\d -> \d\).*", m), m
    bad = specs["typo in a feature"]
    assert bad["error"] and bad["message"] == ("could not run: unknown feature 'magnesum' "
                                               "(did you mean 'magnesium'?)")
    line, col = _line_of(y, "{set: {magnesum")
    assert bad["location"] == f"s2build.yaml:{line}:{col}"

    p = run(["test", "--junit", "specs.xml"], wine, check=3)
    xml = JUnitXml.fromfile(str(wine / "specs.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (9, 2, 1)
    (suite,) = list(xml)
    (err,) = {c.name: c for c in suite}["typo in a feature"].result
    assert isinstance(err, Error)


SPEC_ERRORS = [      # (old text, new text, message); {loc} is on the first line with `new`
    ("gate: accuracy >= 0.9", "gate: acuracy >= 0.9",
     "{loc}: spec 'holdout accuracy': unknown metric 'acuracy' (did you mean 'accuracy'?)"),
    ("gate: accuracy >= 0.9", "gate: accuracy => 0.9",
     "{loc}: spec 'holdout accuracy': cannot read gate 'accuracy => 0.9' (write METRIC OP "
     "NUMBER, e.g. 'accuracy >= 0.95'; OP is one of >=, >, <=, <)"),
    ("gate: f1 >= 0.9", "gate: mse <= 0.9",
     "{loc}: spec 'holdout macro F1': unknown metric 'mse' (metrics for a classification "
     "target: accuracy, f1)"),
    ("{noise: 0.05, seed: 0,", "{noise: 0.05, sed: 0,",
     "{loc}: spec 'robust to measurement noise (5% of each feature's spread)': invariance: "
     "unknown key 'sed' (did you mean 'seed'?)"),
    ("line: 46, expect: 2}", "line: 46, expect: 7}",
     "{loc}: spec 'a cultivar-2 row stays cultivar 2': example.expect: unknown class '7' "
     "(classes: 0, 1, 2)"),
    ("{file: data/wine-3.csv,", "{file: data/wine-9.csv,",
     "{loc}: file 'data/wine-9.csv' not found (check the path; it is relative to "
     "s2build.yaml's folder)"),
    ("name: holdout macro F1", "name: holdout accuracy",
     "{loc}: duplicate spec name 'holdout accuracy' (first used at {first})"),
    ("      - name: holdout accuracy\n", "      - nme: holdout accuracy\n",
     "{loc}: unknown key 'nme' (did you mean 'name'?)"),
]


@pytest.mark.parametrize("old,new,message", SPEC_ERRORS, ids=[m[1].strip() for m in SPEC_ERRORS])
def test_spec_errors_are_config_errors_at_their_location(tmp_path, old, new, message):
    d = copy_example("wine", tmp_path / "wine")
    y = d / "s2build.yaml"
    text = y.read_text()
    assert text.count(old) == 1
    y.write_text(text.replace(old, new, 1))
    first_line, col = _line_of(y, "holdout accuracy")
    first = f"s2build.yaml:{first_line}:{col}"
    lines = y.read_text().splitlines()
    changed = [n for n, (a, b) in enumerate(zip(text.splitlines(), lines), 1) if a != b]
    p = run(["test"], d, check=3)
    assert p.stdout == ""
    got = p.stderr.strip()
    loc = got.split(": ", 1)[0]
    assert loc.startswith(f"s2build.yaml:{changed[0]}:"), got
    assert got == message.format(loc=loc, first=first)


def test_regression_specs_with_tolerance(tmp_path):
    (tmp_path / "data").mkdir()
    rows = ["x1,x2,y"] + [f"{a / 10:.1f},{b / 10:.1f},{a / 10 + 2 * b / 10:.2f}"
                          for a in range(-5, 6) for b in range(-5, 6)]
    (tmp_path / "data" / "lin.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s2build.yaml").write_text(textwrap.dedent("""\
        version: 1
        targets:
          lin:
            sources: [data/lin.csv]
            loader: {label: y, task: regression}
            model: {hidden: [16]}
            train: {epochs: 60, lr: 0.01, batch_size: 16}
            export: {exporter: legacy}
            specs:
              - name: origin maps to zero
                example: {input: {x1: 0, x2: 0}, expect: 0.0, tolerance: 0.3}
              - name: a far point
                example: {input: [0.5, 0.5], expect: 10.0, tolerance: 0.1}
              - name: holdout error
                gate: mae <= 0.5
              - name: small noise
                invariance: {noise: 0.01, tolerance: 0.5}
    """))
    p = run(["test"], tmp_path, check=7)
    lines = p.stdout.splitlines()
    assert lines[0].startswith("lin: built in ")
    assert re.fullmatch(r"lin::origin maps to zero PASSED: predicted -?\d\.\d+, expected 0 ± 0\.3",
                        lines[1]), lines[1]
    assert lines[2] == "lin::a far point FAILED"
    assert re.fullmatch(r"  s2build\.yaml:13:18: predicted \d\.\d+, expected 10 ± 0\.1 "
                        r"\(off by \d+\.\d+\)", lines[3]), lines[3]
    assert lines[4].startswith("lin::holdout error PASSED: mae 0.")
    assert lines[5].startswith("lin::small noise PASSED: ")
    assert lines[-1] == "3 passed, 1 failed"


def test_a_spec_that_cannot_run_is_a_config_error(wine):
    """A mistake in the spec itself (a line past the end of its file) exits 3, naming the
    spec's yaml location, not 7 as if the artifact were wrong."""
    y = wine / "s2build.yaml"
    y.write_text(y.read_text() + textwrap.indent(textwrap.dedent("""\
        - name: past the end
          example: {file: data/wine-3.csv, line: 900, expect: 1}
    """), "      "))
    p = run(["test", "--json"], wine, check=3)
    specs = {s["name"]: s for s in json.loads(p.stdout)["specs"]}
    bad = specs["past the end"]
    assert bad["error"] and bad["message"].startswith("could not run: "), bad
    line, col = _line_of(y, "{file: data/wine-3.csv, line: 900")
    assert bad["location"] == f"s2build.yaml:{line}:{col}"
    assert all(s["passed"] for n, s in specs.items() if n != "past the end")

"""Bad-input corpus (issue 17): each case is a yaml edit or a file plus a command, its exit
code and a substring the message must hold. Each runs the real CLI in a subprocess on a fresh
small project and checks: the exit code, no traceback, the message, source files unchanged and
no `.s2tmp-` leftovers. All fail before training (no torch import)."""

import hashlib
import os
from pathlib import Path

import pytest

from conftest import run

YAML = """\
version: 1
targets:
  t:
    sources: [data/*.csv]
    loader: {format: csv, label: y, task: classification, classes: 2}
    model: {type: mlp, hidden: [4]}
    train: {epochs: 1, batch_size: 8, lr: 0.01, seed: 0}
    export: {exporter: legacy}
    output: build/t.onnx
"""
CSV = "x0,x1,y\n" + "".join(f"{i / 10},{(i * 7 % 10) / 10},{i % 2}\n" for i in range(20))

# name: (old yaml text, new yaml text, extra files, argv, exit code, message substring)
CASES = {
    "output-source": ("build/t.onnx", "data/a.csv", {}, ["build"], 3, "s2build.yaml:9:13: output 'data/a.csv' must end in .onnx"),
    "output-yaml": ("build/t.onnx", "s2build.yaml", {}, ["build"], 3, "s2build.yaml:9:13:"),
    "output-folder": ("build/t.onnx", "data", {}, ["build"], 3, "s2build.yaml:9:13:"),
    "output-empty": ("build/t.onnx", "''", {}, ["build"], 3, "s2build.yaml:9:13:"),
    "output-existing-folder": ("build/t.onnx", "x.onnx", {"x.onnx/keep": "k"}, ["build"], 3, "is an existing folder"),
    "output-parent-is-file": ("build/t.onnx", "f/t.onnx", {"f": "k"}, ["build"], 3, "'f' is a file, not a folder"),
    "output-name-too-long": ("build/t.onnx", "build/" + "x" * 260 + ".onnx", {}, ["build"], 3, "longer than 250 bytes"),
    "clean-output-source": ("build/t.onnx", "data/a.csv", {}, ["clean"], 3, "must end in .onnx"),
    "epochs-int64": ("epochs: 1,", "epochs: 99999999999999999999999,", {}, ["build"], 3, "s2build.yaml:7:21: targets.t.train.epochs: 99999999999999999999999 does not fit a 64-bit integer"),
    "seed-int64": ("seed: 0}", "seed: 99999999999999999999999}", {}, ["build"], 3, "does not fit a 64-bit integer"),
    "width-0": ("hidden: [4]", "hidden: [0]", {}, ["build"], 3, "s2build.yaml:6:33: targets.t.model.hidden.0: must be at least 1"),
    "delimiter-2": ("format: csv,", "format: csv, delimiter: ';;',", {}, ["build"], 3, "expected one character, got ';;'"),
    "yaml-tab": ("    output:", "\toutput:", {}, ["build"], 3, "not tabs"),
    "yaml-indent": ("    output:", "     output:", {}, ["build"], 3, "check the indentation"),
    "yaml-colon": ("  t:\n", "  t:\n    description: a: b\n", {}, ["build"], 3, "must be quoted"),
    "yaml-alias": ("{type: mlp, hidden: [4]}", "*m", {}, ["build"], 3, "needs an anchor &NAME"),
    "seeds-0": ("", "", {}, ["seeds", "t", "-n", "0"], 2, "must be at least 1"),
    "seeds-negative": ("", "", {}, ["seeds", "t", "-n", "-1"], 2, "must be at least 1"),
    "lint-folds-1": ("", "", {}, ["lint", "--folds", "1"], 2, "must be at least 2 (or 0 for none)"),
}


def _digests(d):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*")
            if p.is_file() and ".s2build" not in p.parts}


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus(tmp_path, name):
    old, new, files, argv, code, want = CASES[name]
    d = tmp_path / "p"
    (d / "data").mkdir(parents=True)
    (d / "data" / "a.csv").write_text(CSV)
    (d / "s2build.yaml").write_text(YAML.replace(old, new) if old else YAML)
    for rel, text in files.items():
        os.makedirs(os.path.dirname(d / rel), exist_ok=True)
        Path(d / rel).write_text(text)
    before = _digests(d)
    p = run(argv, d, timeout=60, env={"S2BUILD_NO_SERVER": "1"})
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    assert want in p.stderr, p.stderr
    after = _digests(d)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not [q for q in d.rglob(".s2tmp-*")]


def test_a_failure_says_why_on_either_stream(tmp_path):
    """Redirecting one stream must not lose the reason: stdout's `t: failed` line carries the
    first line of the diagnostic that stderr prints. (`1e6` is a number, as in YAML 1.2.)"""
    d = tmp_path / "p"
    (d / "data").mkdir(parents=True)
    (d / "data" / "a.csv").write_text(CSV)
    (d / "s2build.yaml").write_text(YAML.replace("lr: 0.01", "lr: 1e6").replace("epochs: 1,", "epochs: 3,"))
    p = run(["build"], d, timeout=120, env={"S2BUILD_NO_SERVER": "1"})
    assert p.returncode == 5, p.stderr
    assert "s2build.yaml:7:43: training diverged" in p.stderr, p.stderr
    assert p.stdout.startswith("t: failed: s2build.yaml:7:43: training diverged"), p.stdout
    assert not (d / "build" / "t.onnx").exists()

"""Bad-input corpus (issue 17): each case is a yaml edit or a file plus a command, its exit
code and a substring the message must hold. Each runs the real CLI in a subprocess on a fresh
small project and checks: the exit code, no traceback, the message, source files unchanged and
no `.s2tmp-` leftovers. All fail before training."""

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
    "user-model-width": ("{type: mlp, hidden: [4]}", "{type: net.py:Net}", {"net.py": "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self, in_features, in_shape, out_features):\n        super().__init__()\n        self.l = torch.nn.Linear(in_features, out_features + 1)\n\n    def forward(self, x):\n        return self.l(x)\n"}, ["build"], 5, "s2build.yaml:6:19: model net.py:Net gives [2, 3] (float32) for a batch of 2 rows; the target needs float [batch, 2]"),
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
    "version-2": ("version: 1", "version: 2", {}, ["build"], 3, "s2build.yaml:1:10: version: must be at most 1, got 2"),
    "no-targets": ("targets:\n  t:", "targets: {}\nx-t:\n  t:", {}, ["build"], 3, "no targets declared (add one under 'targets:')"),
    "targets-list": ("targets:\n  t:\n", "targets:\n- t:\n", {}, ["build"], 3, "targets: expected a mapping, got a list"),
    "classes-1": ("classes: 2", "classes: 1", {}, ["build"], 3, "s2build.yaml:5:68: targets.t.loader.classes: need at least 2 classes, got 1"),
    "task-typo": ("task: classification", "task: classify", {}, ["build"], 3, "unknown value 'classify' (did you mean 'classification'?)"),
    "model-typo": ("type: mlp", "type: mpl", {}, ["build"], 3, "unknown type 'mpl' (did you mean 'mlp'?)"),
    "lr-zero": ("lr: 0.01", "lr: 0", {}, ["build"], 3, "s2build.yaml:7:43: targets.t.train.lr: must be at least"),
    "batch-0": ("batch_size: 8", "batch_size: 0", {}, ["build"], 3, "targets.t.train.batch_size: must be at least 1, got 0"),
    "sources-absolute": ("[data/*.csv]", "[/etc/passwd]", {}, ["build"], 3, "'/etc/passwd' is outside the project"),
    "sources-parent": ("[data/*.csv]", "[../x.csv]", {}, ["build"], 3, "'../x.csv' is outside the project"),
    "sources-folder": ("[data/*.csv]", "[data]", {}, ["build"], 3, "s2build.yaml:4:15: source file 'data' not found"),
    "sources-empty": ("[data/*.csv]", "[]", {}, ["build"], 3, "'sources' is empty (list at least one glob of data files)"),
    "format-unknown": ("format: csv", "format: xlsx", {}, ["build"], 3, "unknown format 'xlsx' (one of: csv, parquet"),
    "deps-self": ("output: build/t.onnx", "output: build/t.onnx\n    deps: [t]", {}, ["build"], 3, "s2build.yaml:10:12: dependency cycle: t -> t"),
    "metric-typo": ("output: build/t.onnx", "output: build/t.onnx\n    metrics: [acuracy]", {}, ["build"], 3, "s2build.yaml:10:15: unknown metric 'acuracy' (did you mean 'accuracy'?)"),
    "loss-typo": ("output: build/t.onnx", "output: build/t.onnx\n    loss: mse2", {}, ["build"], 3, "s2build.yaml:10:11: unknown loss 'mse2' (did you mean 'mse'?)"),
    "spec-key-typo": ("output: build/t.onnx", "output: build/t.onnx\n    specs:\n      - {name: s, input: {x0: 1}}", {}, ["test"], 3, "unknown key 'input' (known keys: example"),
    "holdout-all": ("output: build/t.onnx", "output: build/t.onnx\n    holdout: {fraction: 1.0}", {}, ["build"], 3, "targets.t.holdout.fraction: must be below 1, got 1.0"),
    "label-column-missing": ("label: y", "label: z", {}, ["build"], 4, "data/a.csv:1: no column 'z' in the header (columns: x0, x1, y)"),
    "label-out-of-range": ("", "", {"data/b.csv": "x0,x1,y\n1,2,5\n"}, ["build"], 4, "data/b.csv:2: label '5' is out of range (classes: 0..1)"),
    "label-empty": ("", "", {"data/b.csv": "x0,x1,y\n1,2,\n"}, ["build"], 4, "data/b.csv:2: label column 'y' is empty"),
    "csv-empty-file": ("", "", {"data/b.csv": ""}, ["build"], 4, "data/b.csv: empty file: expected a header row"),
    "csv-not-utf8": ("", "", {"data/b.csv": b"x0,x1,y\n1,2,\xe9\n"}, ["build"], 4, "data/b.csv:2: not UTF-8 text"),
    "csv-duplicate-column": ("", "", {"data/b.csv": "x0,x0,y\n1,2,1\n"}, ["build"], 4, "data/b.csv:1: duplicate column 'x0' in the header"),
    "csv-other-columns": ("", "", {"data/b.csv": "x0,x2,y\n1,2,1\n"}, ["build"], 4, "data/b.csv:1: the feature columns differ from the first source file's (extra 'x2'; missing 'x1')"),
    "csv-fewer-columns": ("", "", {"data/b.csv": "x0,y\n1,1\n"}, ["build"], 4, "data/b.csv:1: the feature columns differ from the first source file's (missing 'x1')"),
    "cli-unknown-target": ("", "", {}, ["build", "tt"], 2, "unknown target 'tt' (did you mean 't'?)"),
    "cli-explain-unknown": ("", "", {}, ["explain", "zz"], 2, "unknown target 'zz' (known targets: t)"),
    "cli-gc-size": ("", "", {}, ["gc", "--max-size", "lots"], 2, "--max-size lots: not a size"),
    "cli-predict-unbuilt": ("", "", {"r.csv": "x0,x1\n1,2\n"}, ["predict", "t", "r.csv"], 2, "build/t.onnx does not exist (run: s2build build t)"),
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
        (Path(d / rel).write_bytes if isinstance(text, bytes) else Path(d / rel).write_text)(text)
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


JSONL_YAML = YAML.replace("[data/*.csv]", "[data/*.jsonl]").replace(
    "{format: csv, label: y,", "{format: jsonl, features: [x], label: y,")
JSONL = "".join(f'{{"x": [{i / 10}, {i % 3}], "y": {i % 2}}}\n' for i in range(20))

# name: (the contents of a second source file data/b.jsonl, exit code, message substring)
JSONL_CASES = {
    "invalid-json": ('{"x": [1, 2], "y": 1\n', 4, "data/b.jsonl:1: invalid JSON: Expecting ',' delimiter"),
    "not-an-object": ("[1, 2]\n", 4, "data/b.jsonl:1: expected a JSON object per line"),
    "missing-feature": ('{"z": [1, 2], "y": 1}\n', 4, "data/b.jsonl:1: missing field 'x'"),
    "missing-label": ('{"x": [1, 2]}\n', 4, "data/b.jsonl:1: missing field 'y'"),
    "ragged": ('{"x": [1, 2, 3], "y": 1}\n', 4, "data/b.jsonl:1: features ['x'] [3] differ from those of 'data/a.jsonl'"),
    "text-feature": ('{"x": ["a", 2], "y": 1}\n', 4, "field 'x' is text (set loader.text to 'digits' or 'hash'"),
    "null-feature": ('{"x": [null, 2], "y": 1}\n', 4, "data/b.jsonl:1: field 'x': null is not a number"),
    "bool-label": ('{"x": [1, 2], "y": true}\n', 4, "data/b.jsonl:1: label 'true' is out of range (classes: 0..1)"),
    "nan-token": ('{"x": [NaN, 2], "y": 1}\n', 4, "data/b.jsonl:1: field 'x' is nan (fix or remove the row)"),
    "overflow": ('{"x": [1e400, 2], "y": 1}\n', 4, "data/b.jsonl:1: field 'x' is inf"),
}


@pytest.mark.parametrize("name", sorted(JSONL_CASES))
def test_jsonl_corpus(tmp_path, name):
    text, code, want = JSONL_CASES[name]
    d = tmp_path / "p"
    (d / "data").mkdir(parents=True)
    (d / "data" / "a.jsonl").write_text(JSONL)
    (d / "data" / "b.jsonl").write_text(text)
    (d / "s2build.yaml").write_text(JSONL_YAML)
    before = _digests(d)
    p = run(["build"], d, timeout=60, env={"S2BUILD_NO_SERVER": "1"})
    assert p.returncode == code and "Traceback" not in p.stderr, p.stderr
    assert want in p.stderr, p.stderr
    assert _digests(d) == before
    assert not (d / "build").exists() and not list(d.rglob(".s2tmp-*"))

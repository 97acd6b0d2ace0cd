"""Bad input: each case gives its exact message and exit code, and leaves the previous artifact,
the cache and the outputs' folder untouched. Runs the real CLI in a subprocess."""

import os
from pathlib import Path

import pytest

from conftest import cache_listing, run, sha256

YAML_EPOCHS = "      epochs: 40\n"


def edit(path, old, new, count=1):
    p = Path(path)
    text = p.read_text()
    assert old in text, f"{old!r} not in {p}"
    p.write_text(text.replace(old, new, count))


def edit_line(path, lineno, fn):
    p = Path(path)
    lines = p.read_text().splitlines(keepends=True)
    lines[lineno - 1] = fn(lines[lineno - 1])
    p.write_text("".join(lines))


def _cycle(d):
    edit(d / "s2build.yaml", "    output: build/wine.onnx\n",
         "    output: build/wine.onnx\n    deps: [b]\n"
         "  b:\n    sources: [data/wine-1.csv]\n    loader: {label: cultivar}\n    deps: [wine]\n")


def _user_loss_raises(d):
    edit(d / "s2build.yaml", "    model:\n", "    loss: losses.py:focal\n    model:\n")
    (d / "losses.py").write_text("import torch\n\ndef focal(outputs, targets):\n"
                                 "    raise ValueError('boom')\n")


CASES = {
    "yaml-syntax": (lambda d: edit(d / "s2build.yaml", YAML_EPOCHS, "      epochs: [40\n"), 3,
                    "s2build.yaml:18:17: invalid YAML: did not find expected ',' or ']' "
                    "(a [list] or {mapping} is not closed, or an item lacks its comma; "
                    "while parsing a flow sequence started at s2build.yaml:17:15)"),
    "unknown-key": (lambda d: edit(d / "s2build.yaml", YAML_EPOCHS, "      epoch: 40\n"), 3,
                    "s2build.yaml:17:7: unknown key 'epoch' (did you mean 'epochs'?)"),
    "wrong-type": (lambda d: edit(d / "s2build.yaml", YAML_EPOCHS, "      epochs: ten\n"), 3,
                   "s2build.yaml:17:15: targets.wine.train.epochs: expected an integer, got 'ten'"),
    "wrong-type-bool": (lambda d: edit(d / "s2build.yaml", YAML_EPOCHS, "      epochs: true\n"), 3,
                        "s2build.yaml:17:15: targets.wine.train.epochs: expected an integer, "
                        "got true"),                    # yaml's spelling, not Python's True
    "wrong-type-list": (lambda d: edit(d / "s2build.yaml", YAML_EPOCHS, "      epochs: [4]\n"), 3,
                        "s2build.yaml:17:15: targets.wine.train.epochs: expected an integer, "
                        "got a list"),
    "missing-source": (lambda d: edit(d / "s2build.yaml", "[data/wine-*.csv]",
                                      "[data/wine-*.csv, data/extra.csv]"), 3,
                       "s2build.yaml:7:32: source file 'data/extra.csv' not found "
                       "(check the path; it is relative to s2build.yaml's folder)"),
    "empty-glob": (lambda d: edit(d / "s2build.yaml", "[data/wine-*.csv]", "[data/*.tsv]"), 3,
                   "s2build.yaml:7:15: glob 'data/*.tsv' matches no files "
                   "(check the path; it is relative to s2build.yaml's folder)"),
    "cycle": (_cycle, 3, "s2build.yaml:25:12: dependency cycle: wine -> b -> wine"),
    "csv-field-count": (lambda d: edit_line(d / "data/wine-2.csv", 5,
                                            lambda l: l.replace(",2.95,", ",", 1)), 4,
                        "data/wine-2.csv:5: expected 14 fields (as in the header), got 13 "
                        "(fix the row or quote fields that contain the delimiter)"),
    "csv-not-a-number": (lambda d: edit_line(d / "data/wine-2.csv", 5,
                                             lambda l: "abc" + l[l.index(","):]), 4,
                         "data/wine-2.csv:5: column 'alcohol': 'abc' is not a number "
                         "(fix the cell, or declare the column a category: "
                         "loader.columns: {alcohol: category})"),
    "label-out-of-range": (lambda d: edit_line(d / "data/wine-2.csv", 5,
                                               lambda l: l.rstrip("\n")[:-1] + "7\n"), 4,
                           "data/wine-2.csv:5: label '7' is out of range (classes: 0..2) "
                           "(fix the label or loader.classes)"),
    "inf-feature": (lambda d: edit_line(d / "data/wine-2.csv", 5,
                                        lambda l: "inf" + l[l.index(","):]), 4,
                    "data/wine-2.csv:5: column 'alcohol' is inf (fix or remove the row)"),
    "user-loss-missing": (lambda d: edit(d / "s2build.yaml", "    model:\n",
                                         "    loss: losses.py:focal\n    model:\n"), 3,
                          "s2build.yaml:13:11: user file 'losses.py' not found "
                          "(the path is relative to s2build.yaml's folder)"),
    "user-loss-raises": (_user_loss_raises, 5,
                         "losses.py:4: loss losses.py:focal raised ValueError: boom"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_reported_and_nothing_is_lost(wine, case):
    mutate, code, message = CASES[case]
    artifact = wine / "build" / "wine.onnx"
    before = (sha256(artifact), sha256(str(artifact) + ".json"), cache_listing(wine))
    mutate(wine)
    p = run(["build"], wine, check=code)
    assert p.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in p.stderr
    assert (sha256(artifact), sha256(str(artifact) + ".json"), cache_listing(wine)) == before
    assert sorted(os.listdir(wine / "build")) == ["wine.onnx", "wine.onnx.json"]
    assert not (wine / ".s2build" / "tmp").exists() or not os.listdir(wine / ".s2build" / "tmp")


def test_verbose_shows_traceback(wine):
    edit(wine / "s2build.yaml", YAML_EPOCHS, "      epoch: 40\n")
    p = run(["-v", "build"], wine, check=3)
    assert "Traceback" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == \
        "s2build.yaml:17:7: unknown key 'epoch' (did you mean 'epochs'?)"


def test_unknown_target_on_command_line(wine):
    p = run(["build", "wien"], wine, check=2)
    assert p.stderr.strip() == "s2build: error: unknown target 'wien' (did you mean 'wine'?)"


def test_no_yaml_anywhere(tmp_path):
    p = run(["build"], tmp_path, check=3)
    assert "no s2build.yaml in" in p.stderr and "pass -f FILE" in p.stderr

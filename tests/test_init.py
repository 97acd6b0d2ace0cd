"""`s2build init`: on each shipped example's data (its yaml left behind) the written yaml
validates against the JSON Schema and builds; an existing s2build.yaml is never overwritten.
The real CLI in subprocesses, real builds (2 epochs, except one default yaml built as is)."""

import shutil

import jsonschema
import pytest
import yaml

from s2build.project import schemajson

from conftest import EXAMPLES, run

EXPECT = {"wine": ("csv", "label: cultivar", "task: classification"),
          "penguins": ("csv", "label: species", "task: classification"),
          "digits": ("images", "format: images", "type: cnn"),
          "life": ("jsonl", "label: next", "task: multilabel")}


def data_only(name, tmp_path):
    d = tmp_path / name
    shutil.copytree(EXAMPLES / name / "data", d / "data")
    return d


@pytest.mark.parametrize("name", list(EXPECT))
def test_init_writes_a_yaml_that_builds(name, tmp_path):
    d = data_only(name, tmp_path)
    p = run(["init", str(d), "--epochs", "2"], tmp_path, check=0)
    fmt, *lines = EXPECT[name]
    assert f"s2build: wrote {name}/s2build.yaml: {fmt}" in p.stderr
    text = (d / "s2build.yaml").read_text()
    for line in lines:
        assert line in text, text
    assert "epochs: 2" in text and "# What init saw:" in text
    jsonschema.Draft202012Validator(schemajson.json_schema()).validate(yaml.safe_load(text))
    run(["build"], d, check=0)
    assert (d / "build" / f"{name}.onnx").stat().st_size > 0
    assert run(["build"], d, check=0).stdout == f"{name}: up to date\n"


def test_the_default_yaml_builds_as_it_is(tmp_path):
    d = data_only("wine", tmp_path)
    run(["-C", str(d), "init"], tmp_path, check=0)
    assert "--epochs" not in (d / "s2build.yaml").read_text()
    p = run(["build"], d, check=0)
    assert "wine: built in" in p.stdout and (d / "build" / "wine.onnx").exists()


def test_init_never_overwrites_and_says_why(tmp_path):
    d = data_only("wine", tmp_path)
    (d / "s2build.yaml").write_text("# mine\n")
    p = run(["init", "wine"], tmp_path, check=3)
    assert p.stderr == ("wine/s2build.yaml: s2build.yaml already exists; init never overwrites "
                        "it (edit it, or move it away and run init again)\n")
    assert (d / "s2build.yaml").read_text() == "# mine\n"


def test_label_option_and_folders_without_data(tmp_path):
    d = data_only("penguins", tmp_path)
    run(["init", str(d), "--label", "island"], tmp_path, check=0)
    assert "label: island" in (d / "s2build.yaml").read_text()
    e = tmp_path / "empty"
    e.mkdir()
    p = run(["init", "empty"], tmp_path, check=2)
    assert p.stderr.startswith("s2build: error: init: no data in ")
    d2 = data_only("wine", tmp_path / "x")
    p = run(["init", str(d2), "--label", "colour"], tmp_path, check=2)
    assert "--label colour: no such column in data/wine-1.csv" in p.stderr
    assert not (d2 / "s2build.yaml").exists()

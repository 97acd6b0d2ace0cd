"""config: the documented example parses, and schema errors carry yaml locations."""

import shutil

import pytest

from s2build.project import config, schema
from s2build.errors import ConfigError

from conftest import ROOT


def write(tmp_path, text):
    p = tmp_path / "s2build.yaml"
    p.write_text(text)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n")
    return str(p)


def test_the_documented_example_is_valid_and_complete(tmp_path):
    shutil.copy(ROOT / "s2build.yaml.example", tmp_path / "s2build.yaml")
    project = config.load(str(tmp_path / "s2build.yaml"))
    t = project.targets["wine"]
    documented = (ROOT / "s2build.yaml.example").read_text()
    for section in ("train", "holdout", "export"):
        for key in getattr(schema, section.upper()):
            assert f"{key}:" in documented, f"{section}.{key} is not documented"
    for fmt, keys in schema.LOADERS.items():
        assert fmt in documented
        for key in keys:
            assert f"{key}" in documented, f"loader {fmt}.{key} is not documented"
    for mtype, keys in schema.MODELS.items():
        for key in keys:
            assert f"{key}:" in documented, f"model {mtype}.{key} is not documented"
    assert t.config["train"]["epochs"] == 30


@pytest.mark.parametrize("text, message", [
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y, fromat: csv}\n",
     "s2build.yaml:4:24: unknown key 'fromat' (did you mean 'format'?)"),
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n    train: {lr: -1}\n",
     "s2build.yaml:5:17: targets.t.train.lr: must be at least 1e-12, got -1"),
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n    model: {type: mpl}\n",
     "s2build.yaml:5:19: targets.t.model.type: unknown type 'mpl' (did you mean 'mlp'?)"),
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n  t:\n    sources: x\n",
     "s2build.yaml:5:3: duplicate key 't' (first given at s2build.yaml:2:3; keep one of them)"),
    ("targets:\n  t:\n    loader: {label: y}\n",
     "s2build.yaml:3:5: targets.t: missing required key 'sources' (add it: sources: ...)"),
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n    metrics: [acuracy]\n",
     "s2build.yaml:5:15: unknown metric 'acuracy' (did you mean 'accuracy'?)"),
    ("targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n    deps: [u]\n",
     None),
    ("", "s2build.yaml: the file is empty (declare at least one target under 'targets:')"),
])
def test_schema_errors(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, text)
    if message is None:                       # graph errors come later, from graph.check
        from s2build.project import graph
        with pytest.raises(ConfigError) as e:
            graph.check(config.load(path))
        assert str(e.value) == "s2build.yaml:5:12: target 't' depends on unknown target 'u' " \
                               "(known targets: t)"
        return
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == message


def test_merge_keys_and_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "targets:\n  t: &c\n    sources: data/a.csv\n    loader: {label: y}\n"
                 "    train: {epochs: 3}\n    model: {hidden: [8]}\n"
                 "  u:\n    <<: *c\n    model: {hidden: [4]}\n"       # overrides after <<
                 "  v:\n    train: {epochs: 5}\n    <<: *c\n")          # and before it
    p = config.load(path)
    assert p.targets["t"].config["model"]["hidden"] == [8]
    assert p.targets["u"].config["train"]["epochs"] == 3
    assert p.targets["u"].config["model"]["hidden"] == [4]
    assert p.targets["v"].config["train"]["epochs"] == 5
    assert p.targets["v"].config["model"]["hidden"] == [8]
    assert p.targets["u"].config["output"] == "build/u.onnx"
    assert p.targets["t"].config["loss"] == "cross_entropy"
    assert p.targets["u"].loc("model", "hidden") == "s2build.yaml:9:21"   # the override's place


def test_top_level_x_keys_hold_anchors_and_other_unknown_keys_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "x-defaults: &d\n  loader: {label: y}\n  train: {epochs: 4}\n"
                 "targets:\n  t:\n    <<: *d\n    sources: data/a.csv\n")
    assert config.load(path).targets["t"].config["train"]["epochs"] == 4
    path = write(tmp_path, "defaults: &d\n  loader: {label: y}\ntargets:\n  t:\n    <<: *d\n"
                 "    sources: data/a.csv\n")
    with pytest.raises(ConfigError, match="unknown key 'defaults'"):
        config.load(path)


def test_merge_keys_earlier_mapping_wins_and_explicit_duplicates_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n"
                 "    train: &a {epochs: 2}\n  u:\n    sources: data/a.csv\n"
                 "    loader: {label: y}\n    train: {<<: [*a, {epochs: 9, lr: 0.5}]}\n")
    p = config.load(path)
    assert p.targets["u"].config["train"]["epochs"] == 2 and p.targets["u"].config["train"]["lr"] == 0.5
    path = write(tmp_path, "targets:\n  t: &c\n    sources: data/a.csv\n    loader: {label: y}\n"
                 "  u:\n    <<: *c\n    output: build/x.onnx\n    output: build/y.onnx\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == "s2build.yaml:8:5: duplicate key 'output' (first given at s2build.yaml:7:5; keep one of them)"


def test_exponent_floats_are_numbers_as_in_yaml_1_2(tmp_path, monkeypatch):
    """PyYAML (YAML 1.1) reads `lr: 3e-3` as a string; users mean the number. Quoted stays text."""
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n"
                 "    train: {lr: 3e-3, weight_decay: 1E-4}\n")
    train = config.load(path).targets["t"].config["train"]
    assert train["lr"] == 0.003 and train["weight_decay"] == 0.0001
    path = write(tmp_path, "targets:\n  t:\n    sources: data/a.csv\n    loader: {label: y}\n"
                 "    train: {lr: '3e-3'}\n")
    with pytest.raises(ConfigError, match="expected a number, got '3e-3'"):
        config.load(path)

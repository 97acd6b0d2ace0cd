"""The JSON Schema of s2build.yaml (project/schemajson.py): generated from the loader's schema,
shipped up to date, valid draft 2020-12, and in agreement with the real loader on every shipped
yaml, every pattern s2build.yaml.example documents, and a sample of invalid configs."""

import json
import re
import shutil

import jsonschema
import pytest
import yaml

from s2build.errors import ConfigError
from s2build.project import config, schemajson

from conftest import EXAMPLES, ROOT, run

SHIPPED_YAMLS = sorted(EXAMPLES.glob("*/s2build.yaml")) + [ROOT / "s2build.yaml.example"]
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?P<path>\S+)$", re.M)


@pytest.fixture(scope="module")
def validator():
    schema = schemajson.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_shipped_file_is_current():
    shipped = (ROOT / schemajson.SHIPPED).read_text()
    assert shipped == schemajson.text(), \
        f"{schemajson.SHIPPED} is stale: regenerate it with `{schemajson.REGENERATE}`"
    assert schemajson.shipped_path() == str(ROOT / schemajson.SHIPPED)


def test_the_command_prints_valid_draft_2020_12_and_writes_a_file(tmp_path):
    p = run(["schema"], tmp_path, check=0)
    schema = json.loads(p.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    p = run(["-C", str(tmp_path), "schema", "-o", "out/s.json"], ROOT, check=0)
    assert (tmp_path / "out" / "s.json").read_text() == schemajson.text()
    assert p.stderr == "s2build: wrote out/s.json\n"
    assert not list((tmp_path / "out").glob(".s2tmp-*"))
    assert run(["schema", "-o", "out"], tmp_path, check=2).stderr.startswith(
        "s2build: error: -o out: is a folder")


def test_a_key_added_to_the_loader_schema_appears_in_the_json_schema(monkeypatch):
    from s2build.project import schema
    monkeypatch.setitem(schema.TRAIN, "warmup", schema.Key("int", 0, low=0))
    got = schemajson.json_schema()
    train = got["properties"]["targets"]["additionalProperties"]["properties"]["train"]
    assert train["properties"]["warmup"] == {"type": ["integer", "null"], "minimum": 0,
                                             "maximum": 2 ** 63 - 1, "default": 0}


@pytest.mark.parametrize("path", SHIPPED_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_validates_loads_and_names_the_schema(path, validator):
    text = path.read_text()
    validator.validate(yaml.safe_load(text))
    assert config.load(str(path)).targets
    m = MODELINE.search(text)
    assert m, f"{path} has no yaml-language-server modeline"
    assert (path.parent / m["path"]).resolve() == ROOT / schemajson.SHIPPED


def _documented_patterns():
    """The patterns s2build.yaml.example documents in its comments, as yaml texts to load."""
    example = (ROOT / "s2build.yaml.example").read_text()
    anchor = re.search(r"(x-\w+: &\w+ \{.*\})  at the top", example)[1]
    alias = re.search(r"then  (<<: \*\w+)  inside a target", example)[1]
    user_metric = re.search(r"#\s+(metrics: \[accuracy, \{name: .*\}\])", example)[1]
    base = "targets:\n  t:\n    sources: [data/a.csv]\n    loader: {label: y}\n"
    cnn = re.search(r"\n      # cnn:\n((?:      #   .*\n)+)", example)[1]
    cnn = "".join(line.replace("#   ", "", 1).split("#")[0].rstrip() + "\n"
                  for line in cnn.splitlines())
    return {
        "x- anchor and merge key": f"{anchor}\n" + base.replace("  t:\n", f"  t:\n    {alias}\n")
                                   + "    model: {hidden: [8]}\n",
        "user metric with its direction": base + f"    {user_metric}\n",
        "the cnn block": base.replace("{label: y}", "{label: y, shape: [1, 1, 1]}")
                         + "    model:\n      type: cnn\n" + cnn,
    }


@pytest.mark.parametrize("name", list(_documented_patterns()))
def test_every_documented_pattern_loads(name, tmp_path, validator):
    text = _documented_patterns()[name]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n2,1\n")
    (tmp_path / "metrics.py").write_text("def error_rate(outputs, targets):\n    return 0.0\n")
    (tmp_path / "s2build.yaml").write_text(text)
    validator.validate(yaml.safe_load(text))
    t = config.load(str(tmp_path / "s2build.yaml")).targets["t"]
    if name.startswith("x- anchor"):
        assert t.config["train"]["epochs"] == 20 and t.config["model"]["hidden"] == [8]
    if name == "the cnn block":
        assert t.config["model"]["padding"] == "zeros" and t.config["model"]["channels"] == [16, 32]


BASE = "targets:\n  t:\n    sources: [data/a.csv]\n    loader: {label: y}\n"
INVALID = {
    "unknown key": (BASE + "    train: {epoch: 3}\n", "unknown key 'epoch'"),
    "unknown top-level key": ("defaults: {}\n" + BASE, "unknown key 'defaults'"),
    "wrong type": (BASE + "    train: {epochs: ten}\n", "expected an integer, got 'ten'"),
    "float for an integer": (BASE + "    train: {batch_size: 1.5}\n", "expected an integer"),
    "out of bounds": (BASE + "    holdout: {fraction: 1.0}\n", "must be below 1"),
    "bad enum value": (BASE + "    model: {activation: rleu}\n", "unknown value 'rleu'"),
    "unknown loader format": (BASE.replace("{label: y}", "{label: y, format: xls}"),
                              "unknown format 'xls'"),
    "key of another format": (BASE.replace("{label: y}", "{label: y, delimiter: ';', "
                                           "format: parquet}"), "unknown key 'delimiter'"),
    "unknown loss": (BASE + "    loss: crossentropy\n", "unknown loss 'crossentropy'"),
    "unknown model type": (BASE + "    model: {type: mpl}\n", "unknown type 'mpl'"),
    "missing required key": ("targets:\n  t:\n    loader: {label: y}\n",
                             "missing required key 'sources'"),
    "missing label": ("targets:\n  t:\n    sources: [data/a.csv]\n", "missing required key 'label'"),
    "missing targets": ("version: 1\n", "missing required key 'targets'"),
    "bad version": ("version: 2\n" + BASE, "must be at most 1"),
    "bad target name": (BASE.replace("  t:", "  -t:"), "invalid target name '-t'"),
    "one class": (BASE.replace("{label: y}", "{label: y, classes: 1}"), "at least 2 classes"),
    "bad size": (BASE + "    train: {memory: lots}\n", "expected a size"),
    "image size of one number": ("targets:\n  t:\n    sources: [d/*/*.png]\n"
                                 "    loader: {format: images, size: [8]}\n", "expected [height"),
    "spec without a name": (BASE + "    specs: [{gate: accuracy >= 0.9}]\n",
                            "missing required key 'name'"),
    "spec key typo": (BASE + "    specs: [{name: a, example: {inptu: {x: 1}}}]\n",
                      "unknown key 'inptu'"),
    "user metric without a name": (BASE + "    metrics: [{higher_is_better: true}]\n",
                                   "missing required key 'name'"),
    "rule key typo": ("rules:\n  g:\n    command: [python, g.py]\n    outputs: [data/a.csv]\n"
                      "    output: [x]\n" + BASE, "unknown key 'output'"),
    "rule without outputs": ("rules:\n  g:\n    command: [python, g.py]\n" + BASE,
                             "missing required key 'outputs'"),
    "upstream without a target": (BASE + "    upstream: {use: features}\n",
                                  "missing required key 'target'"),
    "upstream use typo": (BASE + "    upstream: {target: u, use: feature}\n",
                          "unknown value 'feature'"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_configs_are_rejected_by_both(name, tmp_path, validator):
    text, message = INVALID[name]
    errors = list(validator.iter_errors(yaml.safe_load(text)))
    assert errors, f"the JSON Schema accepts {name!r}:\n{text}"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n2,1\n")
    (tmp_path / "s2build.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(tmp_path / "s2build.yaml"))
    assert message in str(e.value)
    assert re.match(r"[^:]*s2build\.yaml:\d+:\d+: ", str(e.value)), str(e.value)  # file:line


def test_the_example_copied_into_a_project_still_validates(tmp_path, validator):
    """s2build.yaml.example is meant to be copied: the copy validates and loads too."""
    shutil.copy(ROOT / "s2build.yaml.example", tmp_path / "s2build.yaml")
    validator.validate(yaml.safe_load((tmp_path / "s2build.yaml").read_text()))
    assert list(config.load(str(tmp_path / "s2build.yaml")).targets) == ["wine"]

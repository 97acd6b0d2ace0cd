"""Where targets may write and read (project/paths.py), what `clean` may remove (store/gc.py),
and the leak check on a real CLI build whose paths are prefixes of each other (issue 10,
findings 11 and 13)."""

import os
import shutil
import uuid

import pytest

from conftest import run, sha256
from s2build.errors import ConfigError
from s2build.project import config
from toy import make_project

BASE = """\
targets:
  t:
    sources: [data/*.csv]
    loader: {label: y, task: classification, classes: 2}
    model: {hidden: [4]}
    train: {epochs: 2}
    loss: losses.py:loss
    output: OUT
"""

BAD_OUTPUTS = {
    "data/a.csv": "must end in .onnx",
    "s2build.yaml": "must end in .onnx",
    "losses.py": "must end in .onnx",
    "/tmp/x.onnx": "is outside the project",
    "../thesis.pdf": "is outside the project",
    "build/../../x.onnx": "is outside the project",
    ".s2build/cache/x.onnx": "is under .s2build/",
    "data/model.onnx": None,              # set below: an input of the other target
    "data/x.onnx": None,
}


def _project(tmp_path, output, extra=""):
    d = tmp_path / "p"
    shutil.rmtree(d, ignore_errors=True)
    (d / "data").mkdir(parents=True)
    (d / "data" / "a.csv").write_text("x0,x1,y\n1,2,0\n3,4,1\n2,1,0\n4,3,1\n")
    (d / "losses.py").write_text("import torch\n\ndef loss(out, y):\n"
                                 "    return torch.nn.functional.cross_entropy(out, y)\n")
    (d / "s2build.yaml").write_text(BASE.replace("OUT", output) + extra)
    return d


OTHER = """\
  u:
    sources: [data/*.csv, "data/**/*.onnx"]
    loader: {label: y, task: classification, classes: 2}
    holdout: {sources: ["data/*.json"]}
"""


@pytest.mark.parametrize("output", list(BAD_OUTPUTS))
def test_a_bad_output_is_a_config_error_and_nothing_is_touched(tmp_path, monkeypatch, output):
    d = _project(tmp_path, output, OTHER)
    monkeypatch.chdir(d)
    victim = os.path.normpath(os.path.join(d, output))
    if not os.path.isabs(output) and not os.path.exists(victim):
        os.makedirs(os.path.dirname(victim), exist_ok=True)
        with open(victim, "w") as f:
            f.write("precious\n")
    before = open(victim, "rb").read() if os.path.exists(victim) else None
    with pytest.raises(ConfigError) as e:
        config.load(str(d / "s2build.yaml"))
    want = BAD_OUTPUTS[output] or "is an input: target 'u' reads sources 'data/**/*.onnx'"
    assert want in e.value.message
    assert e.value.location == "s2build.yaml:8:13"          # the output's value
    assert e.value.hint.startswith("use a path inside the project such as build/t.onnx")
    for cmd in (["build"], ["clean"]):
        p = run(cmd, d, check=3)
        assert want in p.stderr and "Traceback" not in p.stderr
    if before is not None:
        assert open(victim, "rb").read() == before


def test_an_output_whose_sidecar_is_an_input_is_refused(tmp_path, monkeypatch):
    d = _project(tmp_path, "data/model.onnx", OTHER.replace('"data/**/*.onnx"', '"data/*.json"'))
    monkeypatch.chdir(d)
    with pytest.raises(ConfigError) as e:
        config.load(str(d / "s2build.yaml"))
    assert e.value.message == ("output's sidecar 'data/model.onnx.json' is an input: target 'u' "
                               "reads sources 'data/*.json'")


def test_sources_outside_the_project_need_the_opt_in(tmp_path, monkeypatch):
    d = _project(tmp_path, "build/t.onnx")
    monkeypatch.chdir(d)
    outside = tmp_path / "shared.csv"
    outside.write_text("x0,x1,y\n1,2,0\n3,4,1\n")
    text = (d / "s2build.yaml").read_text().replace("[data/*.csv]", "[data/*.csv, ../shared.csv]")
    (d / "s2build.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(d / "s2build.yaml"))
    assert str(e.value) == ("s2build.yaml:3:27: sources: '../shared.csv' is outside the project "
                            "(move the data into the project, or opt in with "
                            "`allow_outside_sources: true` at the top of s2build.yaml)")
    (d / "s2build.yaml").write_text("allow_outside_sources: true\n" + text)
    p = config.load(str(d / "s2build.yaml"))
    assert p.targets["t"].config["sources"][1] == "../shared.csv"


def test_clean_removes_only_what_s2build_recorded_writing(tmp_path):
    d = make_project(tmp_path / "toy", epochs=3)
    run(["build"], d, check=0)
    out = d / "build" / "toy.onnx"
    assert out.exists() and (d / "build" / "toy.onnx.json").exists()
    art = out.read_bytes()
    out.write_bytes(b"the user's own model\n")          # replaced after the build
    p = run(["clean"], d, check=0)
    assert out.read_bytes() == b"the user's own model\n"
    assert "kept build/toy.onnx (not the artifact s2build recorded; changed since)" in p.stdout
    assert "removed build/toy.onnx.json" in p.stdout
    out.write_bytes(art)                                 # the recorded bytes again: ours
    p = run(["clean"], d, check=0)
    assert not out.exists() and p.stdout == "removed build/toy.onnx\n"
    assert run(["clean"], d, check=0).stdout == "nothing to clean\n"
    # a file at an output s2build never wrote (no record) is left alone
    (d / "s2build.yaml").write_text((d / "s2build.yaml").read_text()
                                    .replace("output: build/toy.onnx", "output: build/mine.onnx"))
    (d / "build" / "mine.onnx").write_bytes(b"mine\n")
    p = run(["clean"], d, check=0)
    assert (d / "build" / "mine.onnx").read_bytes() == b"mine\n"
    assert "kept build/mine.onnx (s2build has no record of writing it)" in p.stdout


def test_a_project_whose_path_prefixes_a_data_folder_builds(tmp_path):
    """Project at /s2lkX with data in data/s2lkXdata/, HOME=/root with data/roots.csv: the old
    substring check found both paths in the artifact's metadata and failed with exit 6."""
    if not os.access("/", os.W_OK):
        pytest.skip("needs a writable / to put a project at a short absolute path")
    root = f"/s2lk{uuid.uuid4().hex[:6]}"
    try:
        d = make_project(__import__("pathlib").Path(root), epochs=3)
        sub = d / "data" / (os.path.basename(root) + "data")
        sub.mkdir()
        (d / "data" / "b.csv").rename(sub / "b.csv")
        (d / "data" / "a.csv").rename(d / "data" / "roots.csv")
        (d / "s2build.yaml").write_text((d / "s2build.yaml").read_text()
                                        .replace("[data/*.csv]", "[data/*.csv, data/*/*.csv]"))
        p = run(["build"], d, env={"HOME": "/root"}, check=0)
        assert "built" in p.stdout
        meta = (d / "build" / "toy.onnx").read_bytes()
        assert f"data/{os.path.basename(root)}data/b.csv".encode() in meta
        assert b"data/roots.csv" in meta
        assert sha256(d / "build" / "toy.onnx")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_an_unrecorded_artifact_is_overwritten_and_a_hand_made_file_is_not(toy):
    """A build killed after installing its artifact (no sidecar, no state.json record yet)
    leaves a file s2build wrote: the next build replaces it. A file without s2build's
    metadata at the output is the user's: the build refuses, naming the output's line."""
    out = toy / "build" / "toy.onnx"
    good = sha256(out)
    shutil.rmtree(toy / ".s2build")
    os.unlink(str(out) + ".json")
    run(["--no-server", "build"], toy, check=0)
    assert sha256(out) == good
    out.write_bytes(b"a model made by hand")
    shutil.rmtree(toy / ".s2build")
    p = run(["--no-server", "build"], toy, check=3)
    assert "output 'build/toy.onnx' exists and s2build did not write it" in p.stderr
    assert out.read_bytes() == b"a model made by hand"

"""What the build key covers, through the real CLI: identity stays out of the shared artifact;
glob patterns, built-in metrics and dependencies do not retrain; ctime catches a same-size
rewrite whose mtime was put back."""

import json
import os

import onnx
import pytest

from conftest import run
from toy import relabel, rows, write_csv

TARGET = """\
  {name}:
    sources: {sources}
    loader: {{format: csv, label: y, task: classification, classes: 2}}
    model: {{type: mlp, hidden: [8]}}
    train: {{epochs: 3, batch_size: 16, lr: 0.01, seed: 0}}
    holdout: {{sources: [holdout/*.csv]}}
    metrics: {metrics}
    export: {{exporter: legacy}}
    output: build/{name}.onnx
{deps}"""


def project(d, targets):
    """targets: [(name, sources glob, metrics list, deps list)]."""
    (d / "data").mkdir(parents=True)
    (d / "holdout").mkdir()
    write_csv(d / "data" / "a.csv", rows(40, 1))
    write_csv(d / "data" / "b.csv", rows(20, 2))
    write_csv(d / "holdout" / "h.csv", rows(20, 3))
    write_yaml(d, targets)
    return d


def write_yaml(d, targets):
    text = "version: 1\ntargets:\n" + "".join(
        TARGET.format(name=n, sources=json.dumps([s]), metrics=json.dumps(m),
                      deps=f"    deps: {json.dumps(deps)}\n" if deps else "")
        for n, s, m, deps in targets)
    (d / "s2build.yaml").write_text(text)


def state(d):
    return json.loads((d / ".s2build" / "state.json").read_text())["targets"]


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def rewrite_keeping_mtime(path, index):
    """Flip a label (same size, other bytes) and put the old mtime_ns back, as cp -p does."""
    st = os.stat(path)
    relabel(path, index)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Two targets with the same recipe: the second is restored from the first's entry."""
    d = project(tmp_path_factory.mktemp("keys") / "twins",
                [("zebrafish", "data/*.csv", ["accuracy"], []),
                 ("quokka", "data/*.csv", ["accuracy"], [])])
    p = run(["build"], d, check=0)
    return d, p.stdout + p.stderr


def test_same_recipe_shares_one_artifact_that_names_no_target(twins):
    d, out = twins
    z, q = (d / "build" / "zebrafish.onnx").read_bytes(), (d / "build" / "quokka.onnx").read_bytes()
    assert b"zebrafish" not in q and b"quokka" not in q and b"zebrafish" not in z
    assert "zebrafish: built" in out and "quokka: restored" in out, out
    assert z == q
    assert not any(k == "s2build.target" for k in metadata(d / "build" / "quokka.onnx"))
    side = json.loads((d / "build" / "quokka.onnx.json").read_text())
    assert side["target"] == "quokka" and side["restored_from_cache"] is True
    assert json.loads((d / "build" / "zebrafish.onnx.json").read_text())["target"] == "zebrafish"
    recs = state(d)
    assert recs["quokka"]["target"] == "quokka" and recs["zebrafish"]["target"] == "zebrafish"
    entry = d / ".s2build" / "cache" / recs["quokka"]["key"][:2] / recs["quokka"]["key"]
    shared = json.loads((entry / "record.json").read_text())
    assert "target" not in shared and "target" not in shared.get("facts", {})


def test_rename_restores_an_artifact_under_the_new_name(twins, tmp_path):
    import shutil
    d = tmp_path / "renamed"
    shutil.copytree(twins[0], d)
    write_yaml(d, [("zebrafish", "data/*.csv", ["accuracy"], []),
                   ("platypus", "data/*.csv", ["accuracy"], [])])
    p = run(["explain", "platypus"], d, check=0)
    assert "platypus will be restored from cache because:\n  never built" in p.stdout, p.stdout
    p = run(["build", "platypus"], d, check=0)
    assert "platypus: restored" in p.stdout + p.stderr
    art = (d / "build" / "platypus.onnx").read_bytes()
    assert art == (d / "build" / "zebrafish.onnx").read_bytes() and b"platypus" not in art
    assert json.loads((d / "build" / "platypus.onnx.json").read_text())["target"] == "platypus"
    assert state(d)["platypus"]["target"] == "platypus"


def test_glob_pattern_matching_the_same_files_is_up_to_date(twins, tmp_path):
    import shutil
    d = tmp_path / "glob"
    shutil.copytree(twins[0], d)
    write_yaml(d, [("zebrafish", "data/[ab].csv", ["accuracy"], []),
                   ("quokka", "data/*.csv", ["accuracy"], [])])
    p = run(["explain", "zebrafish"], d, check=0)
    assert p.stdout.startswith("zebrafish: up to date"), p.stdout
    run(["status"], d, check=0)


def test_a_builtin_metric_is_reported_without_retraining(twins, tmp_path):
    import shutil
    d = tmp_path / "metric"
    shutil.copytree(twins[0], d)
    before = (d / "build" / "zebrafish.onnx").read_bytes()
    recorded = json.loads(metadata(d / "build" / "zebrafish.onnx")["s2build.metrics"])
    assert set(recorded) == {"accuracy", "f1"}      # every built-in metric of the task
    assert set(state(d)["zebrafish"]["metrics"]) == {"accuracy"}     # the selection
    write_yaml(d, [("zebrafish", "data/*.csv", ["accuracy", "f1"], []),
                   ("quokka", "data/*.csv", ["accuracy"], [])])
    p = run(["explain", "zebrafish"], d, check=0)
    assert p.stdout.startswith("zebrafish: up to date"), p.stdout
    p = run(["build"], d, check=0)
    assert "zebrafish: up to date" in p.stdout, p.stdout
    assert (d / "build" / "zebrafish.onnx").read_bytes() == before
    reported = state(d)["zebrafish"]["metrics"]
    assert list(reported) == ["accuracy", "f1"]
    assert reported == pytest.approx({k: recorded[k] for k in ("accuracy", "f1")}, rel=1e-5)
    assert set(state(d)["quokka"]["metrics"]) == {"accuracy"}


def test_same_size_rewrite_with_the_old_mtime_is_seen(twins, tmp_path):
    import shutil
    d = tmp_path / "ctime"
    shutil.copytree(twins[0], d, copy_function=shutil.copy2)
    run(["status"], d, check=0)                 # the copy has new inodes: hashed once here
    run(["build"], d, check=0)                  # ... and the refreshed stat cache saved
    rewrite_keeping_mtime(d / "data" / "a.csv", 0)
    p = run(["explain", "zebrafish"], d, check=0)
    assert "zebrafish will be built because:\n  file changed: data/a.csv" in p.stdout, p.stdout


def test_dependencies_order_the_build_but_do_not_retrain(tmp_path):
    d = project(tmp_path / "deps", [("up", "data/a.csv", ["accuracy"], []),
                                    ("down", "data/b.csv", ["accuracy"], ["up"])])
    out = run(["build"], d, check=0).stdout
    assert out.index("up: built") < out.index("down: built"), out
    down_key = state(d)["down"]["key"]
    relabel(d / "data" / "a.csv", 0)
    p = run(["build"], d, check=0)
    assert "up: built" in p.stdout and "down: up to date" in p.stdout, p.stdout
    assert state(d)["down"]["key"] == down_key
    p = run(["explain", "down"], d, check=0)
    assert p.stdout.startswith("down: up to date"), p.stdout
    # A dev build of the dependency: the dependent keeps its release record and key.
    relabel(d / "data" / "a.csv", 1)
    p = run(["build", "--dev"], d, check=0)
    assert "down: up to date" in p.stdout, p.stdout
    down = state(d)["down"]
    assert down["mode"] == "release" and down["key"] == down_key and "deps" not in down
    status = json.loads(run(["status", "--json", "down"], d).stdout)
    assert {t["name"]: t["action"] for t in status["targets"]}["down"] == "up-to-date"

"""End-to-end builds through the real CLI: the example, no-op, touch, edit, revert, restore,
reproducibility, status/explain/graph/predict/clean."""

import json
import os
import subprocess
import sys
import textwrap
import time

import onnx

from conftest import cache_listing, copy_example, run, sha256


def test_example_artifact_runs_in_a_separate_onnxruntime_process(built_wine):
    """A consumer with only onnxruntime and the CSV file: one input per column, named as in
    the header, fed the raw values (the preprocessing is inside the graph)."""
    model_path = built_wine / "build" / "wine.onnx"
    onnx.checker.check_model(onnx.load(str(model_path)), full_check=True)
    script = textwrap.dedent("""
        import csv, sys, numpy as np, onnxruntime as ort
        sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        header, *rows = list(csv.reader(open(sys.argv[2])))
        feeds = {i.name: np.array([float(r[header.index(i.name)]) for r in rows], np.float32)
                 for i in sess.get_inputs()}
        y = np.array([int(r[header.index("cultivar")]) for r in rows])
        logits, probs = sess.run(None, feeds)
        assert probs.shape == (len(rows), 3), probs.shape
        print((probs.argmax(1) == y).mean())
    """)
    p = subprocess.run([sys.executable, "-c", script, str(model_path),
                        str(built_wine / "data" / "wine-1.csv")],
                       capture_output=True, text=True, check=True)
    assert float(p.stdout) > 0.9            # mostly training rows: the network has learned them


def test_metadata_carries_build_key_and_source_digests(built_wine):
    model = onnx.load(str(built_wine / "build" / "wine.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    state = json.loads((built_wine / ".s2build" / "state.json").read_text())
    assert meta["s2build.build_key"] == state["targets"]["wine"]["key"]
    sources = json.loads(meta["s2build.sources"])
    assert sources == {f"data/wine-{i}.csv": sha256(built_wine / "data" / f"wine-{i}.csv")
                       for i in (1, 2, 3)}
    assert meta["s2build.mode"] == "release"
    assert [p.key for p in model.metadata_props] == sorted(meta)
    assert str(built_wine).encode() not in (built_wine / "build" / "wine.onnx").read_bytes()
    sidecar = json.loads((built_wine / "build" / "wine.onnx.json").read_text())
    assert sidecar["build_key"] == meta["s2build.build_key"]
    assert sidecar["verification"]["max_abs_diff"] <= sidecar["verification"]["tolerance"]


NOOP_PROBE = textwrap.dedent("""
    import sys
    from s2build.cli.main import main
    rc = main(["build"])
    heavy = [m for m in ("torch", "onnx", "onnxruntime", "numpy") if m in sys.modules]
    print("HEAVY=" + ",".join(heavy), "RC=%d" % rc)
""")


def test_noop_build_trains_nothing_and_imports_no_torch(wine):
    p = subprocess.run([sys.executable, "-c", NOOP_PROBE], cwd=wine, capture_output=True,
                       text=True, check=True)
    assert p.stdout.splitlines() == ["wine: up to date", "HEAVY= RC=0"]
    assert p.stderr == ""


def test_touching_files_trains_nothing(wine):
    artifact = sha256(wine / "build" / "wine.onnx")
    later = time.time() + 10
    for f in (wine / "data").iterdir():
        os.utime(f, (later, later))
    p = run(["build"], wine, check=0)
    assert p.stdout.strip() == "wine: up to date"
    assert sha256(wine / "build" / "wine.onnx") == artifact
    p = run(["status"], wine, check=0)                 # and the stat cache was refreshed
    assert p.stdout.splitlines()[:-1] == ["wine: up to date"]


def test_edit_rebuilds_explain_names_file_and_revert_restores_from_cache(wine):
    data = wine / "data" / "wine-2.csv"
    original_data = data.read_bytes()
    original = (wine / "build" / "wine.onnx").read_bytes()
    lines = original_data.decode().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\n")[:-1] + "1\n"          # relabel one row
    data.write_text("".join(lines))

    p = run(["explain", "wine"], wine, check=0)
    assert p.stdout.splitlines() == ["wine will be built because:", "  file changed: data/wine-2.csv",
                                     "    row changed: data/wine-2.csv:5"]
    p = run(["status"], wine, check=1)
    assert "wine: stale, needs a build (file changed: data/wine-2.csv)" in p.stdout

    p = run(["build"], wine, check=0)
    assert p.stdout.startswith("wine: built in ")
    assert "(file changed: data/wine-2.csv)" in p.stdout
    edited = (wine / "build" / "wine.onnx").read_bytes()
    assert edited != original

    data.write_bytes(original_data)                          # revert the edit
    p = run(["build"], wine, check=0)
    assert p.stdout.strip() == ("wine: restored from cache (file changed: data/wine-2.csv) "
                                "-> build/wine.onnx")
    assert "building" not in p.stderr
    assert (wine / "build" / "wine.onnx").read_bytes() == original
    assert json.loads((wine / "build" / "wine.onnx.json").read_text())["restored_from_cache"]
    run(["status"], wine, check=0)


def test_config_change_is_explained_by_key_path(wine):
    y = wine / "s2build.yaml"
    y.write_text(y.read_text().replace("epochs: 40", "epochs: 41"))
    p = run(["explain", "wine"], wine, check=0)
    assert "  config changed: train.epochs (40 -> 41)" in p.stdout.splitlines()
    y.write_text(y.read_text().replace("description: wine", "description: a wine"))
    p = run(["explain", "wine"], wine, check=0)
    assert "description" not in p.stdout                  # cannot change the artifact


def test_release_builds_are_byte_identical_across_processes_and_folders(tmp_path):
    a = copy_example("wine", tmp_path / "a")
    b = copy_example("wine", tmp_path / "some" / "deeper" / "b")
    procs = [subprocess.Popen([sys.executable, "-m", "s2build", "build", "--release"], cwd=d,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for d in (a, b)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    assert sha256(a / "build" / "wine.onnx") == sha256(b / "build" / "wine.onnx")


def test_modified_or_missing_output_is_restored_without_training(wine):
    original = sha256(wine / "build" / "wine.onnx")
    (wine / "build" / "wine.onnx").write_bytes(b"not a model")
    p = run(["build"], wine, check=0)
    assert p.stdout.strip() == ("wine: restored from cache (output modified: build/wine.onnx) "
                                "-> build/wine.onnx")
    assert sha256(wine / "build" / "wine.onnx") == original
    os.unlink(wine / "build" / "wine.onnx")
    p = run(["build"], wine, check=0)
    assert "restored from cache (output missing: build/wine.onnx)" in p.stdout
    assert sha256(wine / "build" / "wine.onnx") == original


def test_corrupt_state_costs_a_warning_not_a_crash(wine):
    state = wine / ".s2build" / "state.json"
    state.write_bytes(state.read_bytes()[:57])
    p = run(["build"], wine, check=0)
    assert "s2build: warning: .s2build/state.json is corrupt" in p.stderr
    assert "restored from cache (never built)" in p.stdout     # the cache still knows the key
    run(["build"], wine, check=0)
    assert run(["status"], wine, check=0).stderr == ""


def test_damaged_cache_entry_is_discarded_and_rebuilt(wine):
    entries = [p for p in (wine / ".s2build" / "cache").rglob("model.onnx")]
    assert len(entries) == 1
    entries[0].write_bytes(entries[0].read_bytes()[:-10])
    os.unlink(wine / "build" / "wine.onnx")
    p = run(["build"], wine, check=0)
    assert "wine: built in" in p.stdout


def test_status_json_and_exit_codes(wine):
    p = run(["status", "--json"], wine, check=0)
    assert json.loads(p.stdout)["stale"] == []
    (wine / "data" / "wine-3.csv").write_text((wine / "data" / "wine-3.csv").read_text() + "\n"
                                              + (wine / "data" / "wine-3.csv").read_text().splitlines()[1] + "\n")
    p = run(["status", "--json"], wine, check=1)
    doc = json.loads(p.stdout)
    assert doc["stale"] == ["wine"]
    assert doc["targets"][0]["reasons"] == [{"kind": "file-changed",
                                             "text": "file changed: data/wine-3.csv"}]


def test_build_json_output(wine):
    p = run(["build", "--json"], wine, check=0)
    doc = json.loads(p.stdout)
    assert doc["targets"][0]["name"] == "wine" and doc["targets"][0]["outcome"] == "up-to-date"


def test_predict_csv_and_json(built_wine, tmp_path):
    p = run(["predict", "wine", "data/wine-1.csv"], built_wine, check=0)
    lines = p.stdout.splitlines()
    assert len(lines) == 60 and lines[0].startswith("data/wine-1.csv:2: 0 (p=")
    rows = [{"alcohol": 13.0, "malic_acid": 1.5, "ash": 2.3, "alcalinity_of_ash": 16.0,
             "magnesium": 110, "total_phenols": 2.8, "flavanoids": 3.0,
             "nonflavanoid_phenols": 0.3, "proanthocyanins": 2.0, "color_intensity": 5.5,
             "hue": 1.0, "od280_od315_of_diluted_wines": 3.2, "proline": 1100}]
    f = tmp_path / "rows.json"
    f.write_text(json.dumps(rows))
    p = run(["predict", "wine", str(f), "--json"], built_wine, check=0)
    out = json.loads(p.stdout)
    assert out[0]["prediction"] in (0, 1, 2) and abs(sum(out[0]["probabilities"].values()) - 1) < 1e-5
    assert isinstance(out[0]["prediction"], int)          # an integer label column: a number
    again = json.loads(run(["build", "--json"], built_wine, check=0).stdout)["targets"][0]
    assert again["outcome"] == "up-to-date" and again["metrics"]["accuracy"] > 0.8, again


def test_graph_deps_order_and_clean(wine):
    y = wine / "s2build.yaml"
    y.write_text(y.read_text() + textwrap.indent(textwrap.dedent("""
        small:
          sources: [data/wine-1.csv]
          loader: {label: cultivar, classes: 3}
          model: {hidden: [8]}
          train: {epochs: 2}
          export: {exporter: legacy}
          deps: [wine]
    """), "  "))
    p = run(["graph"], wine, check=0)
    assert p.stdout.splitlines() == ["wine", "small <- wine"]
    assert '"wine" -> "small";' in run(["graph", "--dot"], wine, check=0).stdout
    p = run(["build", "small"], wine, check=0)
    assert p.stdout.splitlines()[0] == "wine: up to date"
    assert p.stdout.splitlines()[1].startswith("small: built in")
    # a dependency only orders the build: its rebuild does not make its dependents stale
    y.write_text(y.read_text().replace("epochs: 40", "epochs: 39"))
    p = run(["explain", "small"], wine, check=0)
    assert p.stdout.startswith("small: up to date"), p.stdout
    p = run(["clean", "small"], wine, check=0)
    assert p.stdout.splitlines() == ["removed build/small.onnx", "removed build/small.onnx.json"]
    p = run(["clean", "--cache"], wine, check=0)
    assert not (wine / "build" / "wine.onnx").exists() and cache_listing(wine) == []

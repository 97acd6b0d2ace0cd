"""Incremental (dev) builds: warm start, provenance, fall back, never reused by release builds."""

import json
import re
import shutil

from conftest import run
from toy import artifact, predict, relabel


def test_dev_build_fine_tunes_the_last_build_and_learns_the_edit(toy):
    parent = artifact(toy).meta["s2build.build_key"]
    before = json.loads(artifact(toy).meta["s2build.metrics"])["accuracy"]
    line = relabel(toy / "data" / "a.csv", 7)
    assert predict(toy, line) != line[-1]
    r = run(["build", "--dev"], toy, check=0)
    assert "toy: built in" in r.stdout
    assert re.search(rf"\(incremental from {parent[:12]}: 1 of 60 training rows changed, "
                     r"[1-9]\d* steps; file changed: data/a.csv\)", r.stdout), r.stdout
    meta = artifact(toy).meta
    assert meta["s2build.mode"] == "incremental"
    assert meta["s2build.parent"] == parent
    assert predict(toy, line) == line[-1]                       # the edited row is learned
    after = json.loads(meta["s2build.metrics"])["accuracy"]
    assert after >= before - 0.01                                # the holdout metric is back
    assert run(["build", "--dev"], toy, check=0).stdout.strip() == "toy: up to date"
    assert run(["status"], toy).returncode == 1                 # not a release artifact

    # a release build never reuses the dev artifact: it trains from scratch
    r = run(["build"], toy, check=0)
    assert "toy: built in" in r.stdout and "mode changed: incremental -> release" in r.stdout
    assert artifact(toy).meta["s2build.mode"] == "release"
    assert "s2build.parent" not in artifact(toy).meta
    assert run(["build", "--dev"], toy, check=0).stdout.strip() == "toy: up to date"


def test_a_chain_of_dev_builds_resumes_each_parent_training_state(toy):
    """Each build's cache entry keeps its optimizer state; the next dev build resumes it, and
    an entry without one (an older s2build's) gets a full build that says why."""
    import glob
    import os
    first = relabel(toy / "data" / "a.csv", 3)
    run(["build", "--dev"], toy, check=0)
    parent = artifact(toy).meta["s2build.build_key"]
    assert os.path.isfile(glob.glob(str(toy / ".s2build" / "cache" / "*" / parent / "optimizer.pt"))[0])
    second = relabel(toy / "data" / "b.csv", 5)
    r = run(["build", "--dev"], toy, check=0)
    assert f"(incremental from {parent[:12]}: 1 of 60 training rows changed, " in r.stdout
    assert "steps; file changed: data/b.csv)" in r.stdout
    assert artifact(toy).meta["s2build.parent"] == parent
    assert predict(toy, first) == first[-1] and predict(toy, second) == second[-1]

    for f in glob.glob(str(toy / ".s2build" / "cache" / "*" / "*" / "optimizer.pt")):
        os.remove(f)
    relabel(toy / "data" / "b.csv", 6)
    r = run(["build", "--dev"], toy, check=0)
    assert "(full build: the last build kept no weights or optimizer state;" in r.stdout
    assert artifact(toy).meta["s2build.mode"] == "release"


def test_dev_build_of_a_changed_recipe_is_a_full_build_and_says_why(toy):
    y = toy / "s2build.yaml"
    y.write_text(y.read_text().replace("lr: 0.01", "lr: 0.02"))
    r = run(["build", "--dev"], toy, check=0)
    assert "(full build: config changed; config changed: train.lr (0.01 -> 0.02))" in r.stdout
    assert artifact(toy).meta["s2build.mode"] == "release"
    assert run(["status"], toy, check=0).stdout.splitlines()[:-1] == ["toy: up to date"]


def test_dev_build_of_a_large_change_falls_back_to_a_full_build(toy):
    path = toy / "data" / "a.csv"
    lines = path.read_text().splitlines()
    for i in range(1, len(lines)):                                # relabel every row
        feats, label = lines[i].rsplit(",", 1)
        lines[i] = f"{feats},{1 - int(label)}"
    path.write_text("\n".join(lines) + "\n")
    r = run(["build", "--dev"], toy, check=0)
    assert "40 of 60 training rows changed; full build instead" in r.stderr
    assert "toy: built in" in r.stdout and "(full build: 40 of 60 training rows changed; " \
        "file changed: data/a.csv)" in r.stdout                  # not "incremental from"
    assert artifact(toy).meta["s2build.mode"] == "release"
    assert run(["status"], toy, check=0).stdout.splitlines()[:-1] == ["toy: up to date"]


def test_moving_an_image_to_another_class_folder_relabels_it(tmp_path):
    """The shard cache keys an image by its bytes and its folder: a moved file is relabelled
    (before, a shard-cache hit kept the old folder's label)."""
    from conftest import EXAMPLES
    from s2build.project import config
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.engine import fingerprint
    d = tmp_path / "img"
    for c in ("0", "1"):
        (d / "data" / c).mkdir(parents=True)
        for f in sorted((EXAMPLES / "digits" / "data" / c).iterdir())[:3]:
            shutil.copy(f, d / "data" / c / f.name)
    (d / "s2build.yaml").write_text(
        "version: 1\ntargets:\n  img:\n    sources: [data/*/*.png]\n"
        "    loader: {format: images, channels: 1}\n    model: {type: cnn}\n"
        "    output: build/img.onnx\n")
    store = ShardStore(str(d / ".s2build"))

    def labels():
        t = config.load(str(d / "s2build.yaml")).targets["img"]
        ds = data.load_dataset(t, fingerprint.target_inputs(t, {}, {})[0], store)
        return {o: ds.classes[y] for o, y in zip(ds.origins, ds.y.tolist())}

    before = labels()
    moved = sorted(p for p in before if p.startswith("data/0/"))[0]
    name = moved.rsplit("/", 1)[1]
    (d / moved).rename(d / "data" / "1" / name)
    after = labels()
    assert before[moved] == "0" and after[f"data/1/{name}"] == "1"


def test_explain_calls_a_file_whose_bytes_reappear_elsewhere_moved():
    from s2build.engine import explain
    old = {"data/0/a.png": "d1", "data/0/b.png": "d2", "data/0/c.png": "d3"}
    new = {"data/1/a.png": "d1", "data/0/b.png": "d2x", "data/2/e.png": "d4"}
    assert [r.text for r in explain.file_changes("file-", "file", old, new)] == [
        "file moved: data/0/a.png -> data/1/a.png", "file changed: data/0/b.png",
        "file removed: data/0/c.png", "file added: data/2/e.png"]


def test_an_edit_during_training_is_not_attributed_to_the_build(tmp_path):
    """Inputs are fingerprinted before and after training (stat first, then hash): a source
    edited while the network trains leaves the artifact recorded under the bytes it was
    trained on, a warning, and a stale target."""
    import json
    import subprocess
    import sys

    from conftest import sha256
    from toy import make_project
    d = make_project(tmp_path / "toy", epochs=1500)
    before = sha256(d / "data" / "a.csv")
    p = subprocess.Popen([sys.executable, "-m", "s2build", "-v", "build"], cwd=d, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    for line in p.stdout:                       # the edit lands while training runs
        seen.append(line)
        if "toy: epoch 2/1500" in line:
            break
    relabel(d / "data" / "a.csv", 0)
    out = "".join(seen) + p.stdout.read()
    assert p.wait(timeout=120) == 0, out
    assert "data/a.csv changed during the build; toy is stale again (run build again)" in out
    assert json.loads(artifact(d).meta["s2build.sources"])["data/a.csv"] == before
    assert run(["status"], d).returncode == 1
    r = run(["build"], d, check=0)
    assert "file changed: data/a.csv" in r.stdout


def test_removed_rows_are_counted_and_unlearned_and_the_dev_artifact_names_its_exporter(tmp_path):
    """Deleting rows whose label contradicts the rest (copies of 8 rows' features with the
    other label) is a change of 8 rows: the dev build fine-tunes for a minimum budget instead
    of "converging" at step 0 with the parent's weights, and its predictions on those inputs
    move toward the remaining rows' label. The dev artifact records the exporter it was
    exported with (legacy), not the config's (dynamo)."""
    import json

    import numpy as np
    import onnx

    from toy import make_project, write_csv
    d = make_project(tmp_path / "toy")
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("export: {exporter: legacy}", "export: {exporter: dynamo}"))
    good = (d / "data" / "a.csv").read_text().splitlines()[1:9]
    bad = [line.rsplit(",", 1)[0] + f",{1 - int(line[-1])}" for line in good]
    write_csv(d / "data" / "c.csv", bad)
    run(["build"], d, check=0)
    parent = artifact(d).meta["s2build.build_key"]
    props = {p.key: p.value for p in onnx.load(str(d / "build" / "toy.onnx")).metadata_props}
    assert props["s2build.exporter"] == "dynamo" and props["s2build.mode"] == "release"
    x = np.asarray([[float(v) for v in line.split(",")[:4]] for line in good], dtype=np.float32)
    label = np.asarray([int(line[-1]) for line in good])

    def pull():                         # mean logit margin of the remaining rows' label
        out = artifact(d).outputs(x)
        return float(np.mean(out[np.arange(8), label] - out[np.arange(8), 1 - label]))

    before = pull()
    (d / "data" / "c.csv").unlink()
    r = run(["build", "--dev"], d, check=0)
    m = re.search(rf"\(incremental from {parent[:12]}: 8 of 68 training rows removed, "
                  r"(\d+) steps; file removed: data/c.csv\)", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) >= 8 * 150 / 16                   # the removal budget, not step 0
    assert artifact(d).meta["s2build.mode"] == "incremental"
    assert pull() > before + 1.0, (before, pull())           # the deleted rows' pull is gone
    props = {p.key: p.value for p in onnx.load(str(d / "build" / "toy.onnx")).metadata_props}
    assert props["s2build.exporter"] == "legacy"
    assert json.loads(props["s2build.config"])["export"]["exporter"] == "dynamo"


def test_the_change_is_a_multiset_difference_of_row_hashes():
    """A removed copy of a duplicated row is a removal; a relabel is a change (its new hash
    added, its old one removed); the holdout rows of an older rows.npz (no holdout mask) are
    not counted as removed."""
    import collections
    import types

    import numpy as np

    from s2build.compile.finetune import change_words, row_change
    h = lambda s: s.encode().ljust(16, b"-")                        # noqa: E731
    ds = types.SimpleNamespace(row_hash=np.array([h("a"), h("a"), h("b2"), h("x"), h("hold")],
                                                 dtype="S16"),
                               holdout=np.array([0, 0, 0, 0, 1], dtype=bool))
    parent = {"row_hash": collections.Counter([h("a"), h("a"), h("a"), h("b"), h("c")]),
              "holdout": True}
    added, removed, n_parent = row_change(parent, ds)
    assert added.tolist() == [2, 3] and removed == 3 and n_parent == 5
    assert change_words(len(added), removed, 5) == "2 of 5 training rows changed, 1 removed"
    older = {"row_hash": collections.Counter([h("a"), h("a"), h("b2"), h("x"), h("hold")]),
             "holdout": False}
    added, removed, n_parent = row_change(older, ds)
    assert (added.tolist(), removed, n_parent) == ([], 0, 4)
    assert change_words(0, 0, 4) == "0 of 4 training rows changed"
    assert change_words(0, 8, 68) == "8 of 68 training rows removed"
    assert change_words(3, 0, 60) == "3 of 60 training rows added"

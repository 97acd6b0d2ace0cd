"""The shipped examples build from a clean copy with one command and do what they claim,
checked through onnxruntime (the artifact's real consumer)."""

import importlib.util
import json

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ROOT, copy_example, run


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    d = copy_example("life", tmp_path_factory.mktemp("ex") / "life")
    run(["build"], d, check=0)
    return d


def life_step():
    spec = importlib.util.spec_from_file_location("make_life", ROOT / "examples" / "life" / "gen" / "make_life.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.life_step


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    d = copy_example("digits", tmp_path_factory.mktemp("ex") / "digits")
    run(["build"], d, check=0)
    return d


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    d = copy_example("penguins", tmp_path_factory.mktemp("ex") / "penguins")
    run(["build"], d, check=0)
    return d


def test_penguins_artifact_takes_raw_columns_in_plain_onnxruntime(penguins):
    """A consumer with only onnxruntime feeds the raw columns, a missing value and an unseen
    category included, and gets the species the build's own evaluation gives."""
    s = session(penguins / "build" / "penguins.onnx")
    names = [i.name for i in s.get_inputs()]
    assert names == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g",
                     "island", "sex", "year"]
    rows = {"bill_length_mm": [39.1, 46.5, 50.0, np.nan], "bill_depth_mm": [18.7, 17.9, 15.2, 14.0],
            "flipper_length_mm": [181, 192, 218, 215], "body_mass_g": [3750, 3500, 5700, 5000],
            "island": ["Torgersen", "Dream", "Biscoe", "Atlantis"],
            "sex": ["male", "female", "NA", ""], "year": [2007, 2008, 2009, 2008]}
    feeds = {k: np.asarray(v, dtype=object if k in ("island", "sex") else np.float32)
             for k, v in rows.items()}
    probs = s.run(None, feeds)[1]
    classes = json.loads(dict((m.key, m.value) for m in
                              __import__("onnx").load(str(penguins / "build" / "penguins.onnx"))
                              .metadata_props)["s2build.classes"])
    assert [classes[i] for i in probs.argmax(1)] == ["Adelie", "Chinstrap", "Gentoo", "Gentoo"]
    # predict on the raw file agrees with the artifact, row by row
    p = run(["predict", "penguins", "data/penguins-dream.csv", "--json"], penguins, check=0)
    out = json.loads(p.stdout)
    assert out[0]["origin"] == "data/penguins-dream.csv:2" and len(out) == 124


def test_digits_reaches_95_percent_on_its_holdout(digits):
    d = digits
    # recompute the holdout through the real loader, then score it with onnxruntime
    from s2build.project import config
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.engine import fingerprint
    target = config.load(str(d / "s2build.yaml")).targets["digits"]
    inputs, _ = fingerprint.target_inputs(target, {}, {})
    ds = data.load_dataset(target, inputs, ShardStore(str(d / ".s2build")))
    sess = session(d / "build" / "digits.onnx")
    x, y = ds.x[ds.holdout], ds.y[ds.holdout]
    probs = sess.run(["probabilities"], {"input": x})[0]
    accuracy = float((probs.argmax(1) == y).mean())
    assert len(y) > 300 and accuracy >= 0.95, accuracy


def test_life_reproduces_the_rule_on_fresh_random_boards(life):
    step = life_step()
    rng = np.random.default_rng(12345)
    density = rng.uniform(0.1, 0.6, size=(1000, 1, 1))
    boards = (rng.random((1000, 8, 8)) < density).astype(np.float32)
    want = np.stack([step(b.astype(np.uint8)) for b in boards]).reshape(1000, 64)
    sess = session(life / "build" / "life.onnx")
    got = sess.run(["probabilities"], {"input": boards[:, None]})[0] > 0.5
    cells = float((got == want.astype(bool)).mean())
    assert cells >= 0.999, cells


def test_life_moves_a_glider(life):
    sess = session(life / "build" / "life.onnx")
    board = np.zeros((8, 8), np.float32)
    for r, c in [(0, 1), (1, 2), (2, 0), (2, 1), (2, 2)]:        # a glider heading south-east
        board[r, c] = 1
    start = board.copy()
    for _ in range(4):
        board = (sess.run(["probabilities"], {"input": board[None, None]})[0] > 0.5)
        board = board.reshape(8, 8).astype(np.float32)
    assert np.array_equal(board, np.roll(start, (1, 1), axis=(0, 1)))   # one cell diagonally


def test_life_predict_names_each_row(life):
    p = run(["predict", "life", "data/patterns.jsonl", "--json"], life, check=0)
    out = json.loads(p.stdout)
    patterns = [json.loads(l) for l in (life / "data" / "patterns.jsonl").read_text().splitlines()]
    assert out[0]["origin"] == "data/patterns.jsonl:1"
    assert sum(o["prediction"] == p["next"] for o, p in zip(out, patterns)) >= len(patterns) - 1


@pytest.mark.parametrize("name", ["digits", "life", "penguins"])
def test_specs_pass_and_verify_reproduces(name, request):
    d = request.getfixturevalue(name)
    p = run(["test"], d, check=0)
    last = p.stdout.strip().splitlines()[-1]
    assert last.endswith(" passed, 0 failed") and not last.startswith("0 passed"), p.stdout
    run(["lock"], d, check=0)
    p = run(["verify"], d, check=0)
    assert "FAILED" not in p.stdout

"""data/columns (TablePrep), compile/prepgraph (the same preprocessing as ONNX nodes) and the
artifact's raw-column inputs: fitted on training rows only, the ONNX features equal numpy's bit
for bit, the merged artifact runs on raw strings and NaN, and its bytes are deterministic."""

import json
import math

import numpy as np
import pytest

from s2build.compile import artifact, prepgraph
from s2build.data import columns
from s2build.data.columns import TablePrep
from s2build.data.table import RawTable

N, TRAIN = 60, 40
ISLANDS = ["Biscoe", "Dream", "Mars", "Torgersen"]      # "Mars" only in non-training rows


def make_raw():
    """Columns: bill (some missing in training), input (a column named like the network's
    input; never missing in training, missing later), island (category, missing in training,
    unseen value later), flat (constant), sex (category, never missing in training), empty
    (missing in every training row)."""
    rng = np.random.default_rng(0)
    bill = (rng.normal(size=N) * 5 + 44).astype(np.float32)
    bill[[1, 8, 45]] = np.nan
    depth = (rng.normal(size=N) * 2 + 17).astype(np.float32)
    depth[[50, 51]] = np.nan
    flat = np.full(N, 3.5, dtype=np.float32)
    empty = np.full(N, np.nan, dtype=np.float32)
    empty[55] = 2.0
    island = rng.choice([0, 1, 3], size=N).astype(np.int32)
    island[[3, 9]] = -1
    island[[41, 42]] = 2                                  # unseen in training
    island[43] = -1
    sex = rng.integers(0, 2, size=N).astype(np.int32)
    sex[[44, 52]] = -1                                    # missing only outside training
    num = np.stack([bill, depth, flat, empty], axis=1)
    codes = np.stack([island, sex], axis=1)
    return RawTable(["bill", "input", "island", "flat", "sex", "empty"],
                    ["number", "number", "category", "number", "category", "number"],
                    num, codes, [list(ISLANDS), ["female", "male"]])


@pytest.fixture(scope="module")
def raw():
    return make_raw()


@pytest.fixture(scope="module")
def prep(raw):
    return TablePrep.fit(raw, np.arange(N) < TRAIN)


def ort_run(data, feeds):
    import onnxruntime as ort
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def test_fit_uses_training_rows_only(raw, prep):
    train = raw.num[:TRAIN].astype(np.float64)
    bill = train[:, 0][~np.isnan(train[:, 0])]
    b = prep.columns[0]
    assert (b.mean, b.std, b.indicator) == (np.float32(bill.mean()), np.float32(bill.std()), True)
    assert prep.columns[1].indicator is False                    # missing only after training
    assert (prep.columns[3].mean, prep.columns[3].std) == (np.float32(3.5), np.float32(1.0))
    assert prep.columns[2].vocab == ["Biscoe", "Dream", "Torgersen"]
    assert prep.feature_names == [
        "bill", "bill (missing)", "input", "island=Biscoe", "island=Dream", "island=Torgersen",
        "island=(other)", "island=(missing)", "flat", "sex=female", "sex=male", "sex=(other)",
        "empty", "empty (missing)"]
    assert prep.width == len(prep.feature_names) == 14
    assert prep.inputs == [("bill", "float"), ("input", "float"), ("island", "string"),
                           ("flat", "float"), ("sex", "string"), ("empty", "float")]
    assert prep.warnings == ["column 'empty' is missing in every training row; "
                             "it is imputed with 0"]
    x = prep.transform(raw)
    assert x.dtype == np.float32 and x.shape == (N, 14)
    assert x[1, 0] == 0.0 and x[1, 1] == 1.0 and x[0, 1] == 0.0           # imputed with mean
    assert x[41, 6] == 1.0 and x[41, 3:6].sum() == 0 and x[43, 7] == 1.0  # unseen, missing
    assert x[44, 11] == 1.0                        # missing, no (missing) slot -> (other)
    assert x[55, 12] == 2.0 and x[0, 12] == 0.0 and x[0, 13] == 1.0
    np.testing.assert_allclose(x[:TRAIN, 0][~np.isnan(raw.num[:TRAIN, 0])].mean(), 0, atol=1e-5)
    assert (x[:, 3:8].sum(axis=1) == 1).all() and (x[:, 9:12].sum(axis=1) == 1).all()


def test_transform_writes_into_out_in_chunks(raw, prep, monkeypatch):
    want = prep.transform(raw, rows=np.arange(5, 50))
    monkeypatch.setattr(columns, "CHUNK", 7)
    out = np.full((45, prep.width), 9.0, dtype=np.float32)
    assert prep.transform(raw, rows=np.arange(5, 50), out=out) is out
    np.testing.assert_array_equal(out, want)
    assert TablePrep.fit(raw, np.arange(N) < TRAIN).to_json() == prep.to_json()
    with pytest.raises(ValueError, match="needs float32"):
        prep.transform(raw, out=np.zeros((N, 3), np.float32))


def test_an_all_number_table_is_transformed_in_place(raw, prep, monkeypatch):
    """A build holds the matrix once: where every column is a number without a missing
    indicator, the features overwrite the raw numbers, bit for bit those of a fresh array
    (holdout rows may still be missing: imputed as elsewhere)."""
    num = raw.num[:, [1, 2]].copy()                     # input, flat: none missing in training
    numbers = RawTable(["input", "flat"], ["number", "number"], num,
                       np.zeros((N, 0), np.int32), [])
    p = TablePrep.fit(numbers, np.arange(N) < TRAIN)
    assert p.in_place(numbers) and not prep.in_place(raw)
    want = p.transform(numbers)
    monkeypatch.setattr(columns, "CHUNK", 7)
    assert np.isnan(num).any()                           # rows 50, 51 (holdout) are missing
    assert p.transform(numbers, out=numbers.num) is num
    np.testing.assert_array_equal(num, want)
    with pytest.raises(ValueError, match="not in place"):   # only all rows, in order
        p.transform(numbers, rows=np.arange(N)[::-1], out=numbers.num)


def test_vocabulary_keeps_the_most_frequent(monkeypatch):
    rng = np.random.default_rng(1)
    vocab = sorted(f"c{i:03d}" for i in range(40))
    codes = rng.integers(0, 40, size=(500, 1)).astype(np.int32)
    raw = RawTable(["c"], ["category"], np.zeros((500, 0), np.float32), codes, [vocab])
    monkeypatch.setattr(columns, "MAX_CATEGORIES", 10)
    prep = TablePrep.fit(raw, np.ones(500, bool))
    counts = np.bincount(codes[:, 0], minlength=40)
    want = sorted(sorted(range(40), key=lambda i: (-counts[i], vocab[i]))[:10])
    assert prep.columns[0].vocab == [vocab[i] for i in want]
    assert "40 categories" in prep.warnings[0] and "10 most frequent" in prep.warnings[0]
    x = prep.transform(raw)
    assert (x[:, 10] == ~np.isin(codes[:, 0], want)).all()     # the rest read as (other)


def test_onnx_features_equal_numpy_bit_for_bit(raw, prep):
    import onnx
    model = prepgraph.prep_model(prep)
    onnx.checker.check_model(onnx.load_model_from_string(model), full_check=True)
    feeds = prep.feeds(raw)
    assert feeds["island"][3] == "" and feeds["island"][41] == "Mars"
    assert math.isnan(feeds["bill"][1]) and feeds["bill"].dtype == np.float32
    got = ort_run(model, feeds)[0]
    want = prep.transform(raw)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_inline_values_match_the_table(prep):
    rows = [{"bill": None, "input": 17.25, "island": "NA", "flat": "3.5", "sex": "male",
             "empty": math.nan},
            {"bill": " 41.5 ", "input": "NaN", "island": "Mars", "flat": 1, "sex": "",
             "empty": "null"},
            {"bill": 50, "input": 16.0, "island": " Dream ", "flat": None, "sex": "n/a",
             "empty": 7.0}]
    same = RawTable(  # the same three rows as a table
        ["bill", "input", "island", "flat", "sex", "empty"],
        ["number", "number", "category", "number", "category", "number"],
        np.array([[np.nan, 17.25, 3.5, np.nan], [41.5, np.nan, 1, np.nan],
                  [50, 16, np.nan, 7]], np.float32),
        np.array([[-1, 1], [2, -1], [1, -1]], np.int32), [list(ISLANDS), ["female", "male"]])
    feeds = prep.feeds_from_values(rows)
    assert list(feeds["island"]) == ["", "Mars", "Dream"] and list(feeds["sex"]) == ["male", "", ""]
    got = ort_run(prepgraph.prep_model(prep), feeds)[0]
    np.testing.assert_array_equal(got, prep.transform(same))
    for row, message in [({**rows[0], "beak": 1}, "unknown column 'beak'"),
                         ({k: v for k, v in rows[0].items() if k != "sex"}, "no value for column 'sex'"),
                         ({**rows[0], "bill": "long"}, "'bill' is a number column"),
                         ({**rows[0], "flat": math.inf}, "not finite")]:
        with pytest.raises(ValueError, match=message):
            prep.feeds_from_values([rows[0], row])


def exported_net(width, seed=0, exporter="legacy"):
    import torch

    from s2build.compile import export
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(width, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    net.eval()
    meta = {"s2build.task": "classification", "s2build.classes": '["a","b","c"]'}
    data = export.export_onnx(net, torch.zeros(2, width), output_names=["logits"],
                              metadata=meta, exporter=exporter)
    return net, data, meta


def test_the_dynamo_export_takes_the_prep_too(raw, prep):
    """The default exporter's graph (opset 18, optimised) merges and keeps parity as well."""
    import onnx
    import torch
    net, network, meta = exported_net(prep.width, exporter="dynamo")
    data = prepgraph.prepend(prep, network)
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert {p.key: p.value for p in model.metadata_props} == meta
    with torch.no_grad():
        want = net(torch.from_numpy(prep.transform(raw))).numpy()
    assert np.abs(artifact.Artifact(data=data).outputs(prep.feeds(raw)) - want).max() <= 1e-5
    assert prepgraph.prepend(prep, network) == data


def test_the_artifact_takes_raw_columns(raw, prep, monkeypatch):
    import onnx
    import torch
    net, network, meta = exported_net(prep.width)
    data = prepgraph.prepend(prep, network)
    model = onnx.load_model_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}["ai.onnx.ml"] == prepgraph.ML_OPSET
    assert {p.key: p.value for p in model.metadata_props} == meta
    assert not [n for n in model.graph.node if n.doc_string] and not model.doc_string
    a = artifact.Artifact(data=data)
    assert a.output_names == ["logits"] and a.takes_columns
    assert a.inputs == [(name, kind, ["batch"]) for name, kind in prep.inputs]
    assert artifact.Artifact(data=network).inputs == [("input", "float", ["batch", prep.width])]
    monkeypatch.setattr(artifact, "CHUNK", 7)                  # several chunks
    got = a.outputs_feeds(prep.feeds(raw))
    with torch.no_grad():
        want = net(torch.from_numpy(prep.transform(raw))).numpy()
    assert got.shape == (N, 3) and np.abs(got - want).max() <= 1e-5
    with pytest.raises(ValueError, match="the artifact takes"):
        a.run_feeds({"bill": raw.num[:, 0]})


def test_bytes_are_deterministic_and_json_round_trips(raw, prep):
    _net, network, _meta = exported_net(prep.width)
    once = prepgraph.prepend(prep, network)
    assert prepgraph.prepend(prep, network) == once
    text = json.dumps(prep.to_json(), sort_keys=True)
    back = TablePrep.from_json(json.loads(text))
    assert json.dumps(back.to_json(), sort_keys=True) == text
    assert prepgraph.prepend(back, network) == once
    np.testing.assert_array_equal(back.transform(raw), prep.transform(raw))
    assert b"/work" not in once and b"/tmp" not in once
    with pytest.raises(ValueError, match="not a s2build.tableprep/1"):
        TablePrep.from_json({"columns": []})


def test_merge_refuses_what_it_cannot_join(prep):
    _net, network, _meta = exported_net(prep.width + 1)
    with pytest.raises(ValueError, match=r"table gives \[batch, 14\]"):
        prepgraph.prepend(prep, network)
    _net, network, _meta = exported_net(1)
    logits = TablePrep([columns.NumberPrep("logits", 0.0, 1.0, False)])
    with pytest.raises(ValueError, match="column 'logits' has the name of a model output"):
        prepgraph.prepend(logits, network)
    with pytest.raises(ValueError, match="cannot name a graph input"):
        prepgraph.prepend(TablePrep([columns.NumberPrep("s2prep/num", 0.0, 1.0, False)]), network)


def test_raw_tables_join_copy_and_change(raw, prep):
    a, b = raw.take(slice(0, 30)), raw.take(np.arange(30, N))
    b.vocab[0] = ["Biscoe", "Dream", "Mars", "Torgersen", "Zeta"]       # a superset: same codes
    joined = a.concat([b])
    assert len(joined) == N and joined.vocab[0] == b.vocab[0]
    assert list(joined.column("island")) == list(raw.column("island"))
    np.testing.assert_array_equal(prep.transform(joined), prep.transform(raw))
    other = RawTable(raw.names, raw.kinds, raw.num[:2], np.array([[0, 0], [-1, 0]], np.int32),
                     [["Aa"], ["male"]])                                 # its own vocabularies
    j = raw.concat([other])
    assert j.vocab == [["Aa", *ISLANDS], ["female", "male"]]
    assert list(j.column("island")[-2:]) == ["Aa", ""] and list(j.column("sex")[-2:]) == ["male"] * 2
    c = raw.copy()
    c.set_column("island", " Zeta ")
    c.set_column("bill", "NA")
    c.set_column("input", 2)
    assert set(c.column("island")) == {"Zeta"} and np.isnan(c.column("bill")).all()
    assert (c.column("input") == 2).all() and not np.isnan(raw.column("bill")).all()
    with pytest.raises(ValueError, match="'flat' is a number column"):
        c.set_column("flat", "tall")
    x = prep.transform(c)
    assert (x[:, 6] == 1).all() and (x[:, 1] == 1).all()                # (other), (missing)


def test_inline_rows_as_a_table_and_the_artifact_on_either(raw, prep):
    _net, network, meta = exported_net(prep.width)
    meta_prep = {**meta, "s2build.prep": json.dumps(prep.to_json(), sort_keys=True)}
    import onnx
    model = onnx.load_model_from_string(prepgraph.prepend(prep, network))
    del model.metadata_props[:]
    for k in sorted(meta_prep):
        model.metadata_props.add(key=k, value=meta_prep[k])
    a = artifact.Artifact(data=model.SerializeToString())
    assert a.prep.to_json() == prep.to_json()
    assert artifact.Artifact(data=network).prep is None
    entry = next(e for e in model.metadata_props if e.key == "s2build.prep")
    entry.value = entry.value[:-9]                                            # damaged JSON
    with pytest.raises(artifact.ArtifactError, match="s2build.prep metadata"):
        artifact.Artifact(data=model.SerializeToString()).prep
    rows = [{"bill": 40, "input": None, "island": "Dream", "flat": 3.5, "sex": "NA",
             "empty": None}, {"bill": "NA", "input": 15, "island": "Mars", "flat": 0,
                              "sex": "female", "empty": 1}]
    table = prep.raw_from_values(rows)
    assert table.vocab == [["Dream", "Mars"], ["female"]] and table.codes.tolist() == [[0, -1], [1, 0]]
    want = a.outputs(prep.feeds_from_values(rows))
    np.testing.assert_array_equal(a.outputs(table), want)
    np.testing.assert_array_equal(a.run(raw)[0], a.outputs_feeds(prep.feeds(raw)))


def test_null_tokens_are_missing_and_damaged_json_is_an_error():
    """A null token that slipped into a RawTable vocabulary is missing on both sides."""
    raw = RawTable(["c"], ["category"], np.zeros((4, 0), np.float32),
                   np.array([[0], [1], [2], [-1]], np.int32), [["", "NA", "x"]])
    prep = TablePrep.fit(raw, np.array([False, True, True, False]))
    assert prep.columns[0].vocab == ["x"] and prep.columns[0].missing
    x = prep.transform(raw)
    assert x.tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 1]]
    np.testing.assert_array_equal(ort_run(prepgraph.prep_model(prep), prep.feeds(raw))[0], x)
    inf = RawTable(["v"], ["number"], np.array([[1.0], [np.inf]], np.float32),
                   np.zeros((2, 0), np.int32), [])
    with pytest.raises(ValueError, match="'v' holds an infinite value"):
        TablePrep.fit(inf, np.ones(2, bool))
    good = prep.to_json()
    for bad in [{**good, "columns": [{"kind": "number"}]}, {**good, "columns": 3},
                {**good, "columns": [{"name": "v", "kind": "number", "mean": "1", "std": 1.0,
                                      "indicator": False}]},
                {**good, "columns": [{"name": "c", "kind": "category", "vocab": ["NA"],
                                      "missing": True}]}]:
        with pytest.raises(ValueError):
            TablePrep.from_json(bad)


def test_columns_named_like_network_values_are_kept_apart():
    """A column named like a network initializer ("0.weight") renames the network's value."""
    import torch
    net, network, _meta = exported_net(4)
    prep = TablePrep([columns.NumberPrep("0.weight", 1.0, 2.0, False),
                      columns.NumberPrep("bill length (mm)", 0.0, 1.0, False),
                      columns.CategoryPrep("île", ["a"], False)])
    a = artifact.Artifact(data=prepgraph.prepend(prep, network))
    assert [n for n, _t, _s in a.inputs] == ["0.weight", "bill length (mm)", "île"]
    got = a.outputs(prep.feeds_from_values([{"0.weight": 3, "bill length (mm)": 1, "île": "a"}]))
    with torch.no_grad():
        want = net(torch.tensor([[1.0, 1.0, 1.0, 0.0]])).numpy()
    assert np.abs(got - want).max() <= 1e-6

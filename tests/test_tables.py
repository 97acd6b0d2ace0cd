"""Real tables (issue 11): pyarrow reading with exact `file:line`, parquet with nulls, category
and missing values inside the ONNX artifact, content-defined blocks, the holdout split, and the
streaming path for data larger than `train.memory`. Builds run in-process through the engine
(the CLI path is covered by test_loaders and the penguins example in test_examples)."""

import io
import json
import textwrap

import numpy as np
import pytest

from conftest import run


def table_project(tmp_path, files, loader_extra="", train_extra="", name="p"):
    d = tmp_path / name
    (d / "data").mkdir(parents=True)
    for rel, content in files.items():
        (d / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    fmt = "parquet" if any(r.endswith(".parquet") for r in files) else "csv"
    (d / "s2build.yaml").write_text(textwrap.dedent(f"""\
        targets:
          t:
            sources: [data/*.{fmt}]
            loader: {{format: {fmt}, label: y{loader_extra}}}
            model: {{type: mlp, hidden: [16]}}
            train: {{epochs: 4, batch_size: 16, seed: 0{train_extra}}}
            holdout: {{fraction: 0.25, seed: 0}}
            export: {{exporter: legacy}}
            output: build/t.onnx
        """))
    return d


def rows(n=120, seed=0, missing=True):
    """A table with a number, a category (with NA) and a label that depends on both."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = np.where((a > 0) ^ (colour == "red"), "yes", "no")
    out = []
    for i in range(n):
        av = "NA" if missing and i % 11 == 3 else f"{a[i]:.4f}"
        cv = "" if missing and i % 13 == 5 else str(colour[i])
        out.append((av, cv, str(y[i])))
    return out


def csv_text(table):
    return "a,colour,y\n" + "".join(f"{a},{c},{y}\n" for a, c, y in table)


def load(d):
    from s2build.data import dataset
    from s2build.data.shards import ShardStore
    from s2build.engine import runner
    from s2build.project import config
    project = config.load(str(d / "s2build.yaml"))
    steps, _state = runner.status(project, None)
    return dataset.load_dataset(steps[0].target, steps[0].inputs, ShardStore(project.state_dir))


def test_quoted_newlines_give_the_true_line(tmp_path):
    text = ('a,note,y\n1.0,"two\nembedded\nnewlines",x\n2.0,plain,z\n'
            '3.0,"x",w\nnot-a-number,ok,x\n' + "".join(f"{i}.5,n{i},x\n" for i in range(20)))
    d = table_project(tmp_path, {"data/q.csv": text}, loader_extra=", columns: {note: category}")
    p = run(["build"], d, check=None)
    assert p.returncode != 0
    assert "data/q.csv:7" in p.stderr + p.stdout, p.stderr
    assert "column 'a'" in p.stderr and "Traceback" not in p.stderr
    # and a clean file numbers its rows by their first line
    good = 'a,note,y\n1.0,"two\nlines",x\n2.0,b,z\n\n3.0,c,x\n'
    from s2build.data import tablefile
    block = tablefile.parse_whole("q.csv", good.encode(), {
        "format": "csv", "label": "y", "task": "classification", "features": None,
        "columns": {"note": "category"}, "delimiter": ","})
    assert block.lines.tolist() == [2, 4, 6]
    assert block.class_names().tolist() == ["x", "z", "x"]


def test_parquet_with_nulls_builds_and_runs_raw_in_onnxruntime(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from s2build.compile.artifact import Artifact
    table = rows(160)
    a = pa.array([None if r[0] == "NA" else float(r[0]) for r in table], pa.float64())
    c = pa.array([None if r[1] == "" else r[1] for r in table], pa.string())
    buf = io.BytesIO()
    pq.write_table(pa.table({"a": a, "colour": c, "y": [r[2] for r in table]}), buf,
                   row_group_size=50)
    d = table_project(tmp_path, {"data/t.parquet": buf.getvalue()})
    run(["build"], d, check=0)
    art = Artifact(str(d / "build" / "t.onnx"))
    assert [i[0] for i in art.inputs] == ["a", "colour"]
    assert [i[1] for i in art.inputs] == ["float", "string"]
    # raw inputs with NaN, an empty string, NA and an unseen category
    feeds = {"a": np.array([np.nan, 0.5, -0.5, 1.0], np.float32),
             "colour": np.array(["", "NA", "purple", "red"], dtype=object)}
    out = art.run(feeds)[0]
    assert out.shape == (4, 2) and np.isfinite(out).all()
    # the artifact on the raw holdout rows equals the build's own evaluation (torch)
    ds = load(d)
    import torch
    from s2build.compile import train  # noqa: F401  (torch loaded)
    held = np.flatnonzero(ds.holdout)
    onnx_out = art.run(ds.raw.take(held))[0]
    state = torch.load(io.BytesIO(_cache_file(d, "weights.pt")), weights_only=True)
    from s2build.compile import models
    from s2build.project import config
    project = config.load(str(d / "s2build.yaml"))
    net = models.build(project.targets["t"], (ds.x.shape[1],), 2, torch.from_numpy(ds.x))
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        ref = net(torch.from_numpy(ds.x[held])).numpy()
    assert np.abs(onnx_out - ref).max() < 1e-4
    assert (onnx_out.argmax(1) == ref.argmax(1)).all()


def _cache_file(d, name):
    hits = list((d / ".s2build" / "cache").rglob(name))
    assert hits, name
    return hits[0].read_bytes()


def test_unseen_category_and_mostly_missing_column_are_reported(tmp_path):
    table = rows(120)
    text = "a,colour,empty,y\n" + "".join(f"{a},{c},,{y}\n" for a, c, y in table)
    held = "a,colour,empty,y\n0.5,violet,,yes\n-0.5,red,,no\n0.1,violet,,no\n"
    d = table_project(tmp_path, {"data/t.csv": text, "held.csv": held},
                      loader_extra=", columns: {empty: number}")
    y = d / "s2build.yaml"
    y.write_text(y.read_text().replace("holdout: {fraction: 0.25, seed: 0}",
                                       "holdout: {sources: [held.csv]}"))
    p = run(["build"], d, check=0)
    assert "column 'empty' is missing in every training row" in p.stderr
    p = run(["lint"], d, check=None)
    out = p.stdout + p.stderr
    assert "held.csv:2: warning[unseen-category]: column 'colour': 'violet' appears in no " \
        "training row" in out, out
    assert "held.csv:4: warning[unseen-category]" in out
    assert "data/t.csv:1: warning[mostly-missing]: column 'empty' is missing in 100% of the rows" \
        in out


def test_edit_keeps_the_split_and_reparses_one_block(tmp_path, monkeypatch):
    from s2build.data import csvblocks
    monkeypatch.setattr(csvblocks, "TARGET", 16 * 1024)
    table = rows(4000, missing=False)
    d = table_project(tmp_path, {"data/t.csv": csv_text(table)})
    before = load(d)
    blocks = before.blocks["parsed"]
    assert blocks > 4, blocks
    # edit one row's label in the middle
    lines = (d / "data" / "t.csv").read_text().splitlines()
    a, c, y = lines[2000].split(",")
    lines[2000] = f"{a},{c},{'no' if y == 'yes' else 'yes'}"
    (d / "data" / "t.csv").write_text("\n".join(lines) + "\n")
    after = load(d)
    assert after.blocks["parsed"] == 1, after.blocks
    assert (after.holdout == before.holdout).all()          # the split: inputs only
    assert (after.input_hash == before.input_hash).all()
    changed = np.flatnonzero(after.row_hash != before.row_hash)
    assert changed.tolist() == [1999]


def test_stream_builds_under_a_memory_budget_and_reproduces(tmp_path):
    table = rows(3000, missing=True)
    from s2build.data import csvblocks
    text = csv_text(table)
    files = {f"data/t{i}.csv": "a,colour,y\n" + "".join(f"{a},{c},{y}\n" for a, c, y in
                                                        table[i * 1000:(i + 1) * 1000])
             for i in range(3)}
    assert csvblocks.TARGET > len(text)
    d = table_project(tmp_path, files, train_extra=", memory: 1KB")
    p = run(["build", "--release"], d, check=0)
    side = json.loads((d / "build" / "t.onnx.json").read_text())
    assert side["rows"]["train"] + side["rows"]["holdout"] == 3000
    first = (d / "build" / "t.onnx").read_bytes()
    p = run(["verify"], d, check=None)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (d / "build" / "t.onnx").read_bytes() == first
    # the streamed network learned the table as the in-memory one does
    assert side["metrics"]["accuracy"] > 0.8, side["metrics"]


@pytest.mark.parametrize("text,where", [
    ("a,y\n1.0,x\n2.0\n", "t.csv:3"),
    ("a,y\n1.0,x\ninf,y\n", "t.csv:3"),
    ("a,y\n1.0,x\n2.0,\n", "t.csv:3"),
])
def test_bad_cells_name_their_line(tmp_path, text, where):
    d = table_project(tmp_path, {"data/t.csv": text})
    p = run(["build"], d, check=None)
    assert p.returncode != 0 and where in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_the_split_version_is_in_the_toolchain():
    """Changing which rows are held out changes every artifact: the split's version is a
    toolchain fact (in the key), so the first rebuild after a change says so."""
    from s2build.data import rowhash
    from s2build.engine import toolchain
    assert toolchain.toolchain()["holdout_split"] == f"rowhash-v{rowhash.SPLIT_VERSION}"


def test_columns_and_memory_are_in_the_key_and_explained(tmp_path):
    """loader.columns (a kind changes the preprocessing) and train.memory (streaming changes
    the data order) can change the artifact's bytes: each is in the key and `explain` names it."""
    d = table_project(tmp_path, {"data/t.csv": csv_text(rows(120))})
    run(["build"], d, check=0)
    first = (d / "build" / "t.onnx").read_bytes()
    y = d / "s2build.yaml"
    base = y.read_text()
    y.write_text(base.replace("label: y}", "label: y, columns: {a: category}}"))
    p = run(["explain", "t"], d, check=0)
    assert "config changed: loader.columns" in p.stdout, p.stdout
    run(["build"], d, check=0)
    assert (d / "build" / "t.onnx").read_bytes() != first
    y.write_text(base.replace("seed: 0}", "seed: 0, memory: 1KB}", 1))
    p = run(["explain", "t"], d, check=0)
    assert "config changed: train.memory" in p.stdout, p.stdout
    p = run(["build"], d, check=0)
    assert "built in" in p.stdout
    y.write_text(base)
    p = run(["build"], d, check=0)
    assert "restored from cache" in p.stdout and (d / "build" / "t.onnx").read_bytes() == first


def test_reading_tables_never_imports_pandas(tmp_path):
    """pyarrow imports pandas (when installed: cleanlab pulls it in) on its first to_numpy,
    pa.array or pa.scalar: 0.5-1.2 s of a build. The readers avoid all three."""
    import subprocess
    import sys
    import pyarrow as pa
    import pyarrow.parquet as pq
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('a,b,c,label\n1.5, red ,"x\ny",p\nNA,blue,3,q\n2,,NA,p\n')
    pq.write_table(pa.table({"a": pa.array([1.0, None, 2.5], pa.float32()),
                             "b": ["red", None, "blue"], "n": [1, 2, None],
                             "label": ["p", "q", "p"]}), tmp_path / "t.parquet")
    code = f"""
import sys
from s2build.data import tablefile
for name, fmt in (("t.csv", "csv"), ("t.parquet", "parquet")):
    loader = dict(format=fmt, label="label", task="classification", columns={{}},
                  delimiter=",", classes=None)
    block = tablefile.parse_whole(name, open({str(tmp_path)!r} + "/" + name, "rb").read(), loader)
    print(block.x.tolist(), block.codes.tolist(), block.vocab, block.labels.tolist())
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False", out.stdout
    assert "nan" in lines[0] and "'blue', 'red'" in lines[0]
    assert lines[1].startswith("[[1.0, 1.0], [nan, 2.0], [2.5, nan]]"), lines[1]

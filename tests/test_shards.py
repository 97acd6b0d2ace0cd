"""Shards are the object files: editing one of 1,000 source files re-parses exactly that file,
and explain names the rows that changed."""

import json

import numpy as np

from conftest import run


def test_editing_one_of_1000_files_reparses_one(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    for i in range(1000):
        rows = rng.normal(size=(5, 3))
        labels = (rows[:, 0] > 0).astype(int)
        (tmp_path / "data" / f"{i:04d}.csv").write_text(
            "a,b,c,y\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{l}\n"
                                  for r, l in zip(rows, labels)))
    (tmp_path / "s2build.yaml").write_text(
        "targets:\n  t:\n    sources: [data/*.csv]\n    loader: {label: y, classes: 2}\n"
        "    model: {hidden: [8]}\n    train: {epochs: 1, batch_size: 256}\n"
        "    export: {exporter: legacy}\n")
    run(["build"], tmp_path, check=0)
    assert json.loads((tmp_path / "build" / "t.onnx.json").read_text())["parsed_files"] == 1000

    def flip_label(name, line):
        f = tmp_path / "data" / name
        lines = f.read_text().splitlines(keepends=True)
        row = lines[line - 1].rstrip("\n")
        lines[line - 1] = row[:-1] + ("0" if row.endswith("1") else "1") + "\n"
        f.write_text("".join(lines))

    flip_label("0421.csv", 4)
    p = run(["-v", "build"], tmp_path, check=0)
    assert "parsed 1 of 1000 files" in p.stdout
    assert json.loads((tmp_path / "build" / "t.onnx.json").read_text())["parsed_files"] == 1

    flip_label("0007.csv", 2)
    p = run(["explain", "t"], tmp_path, check=0)
    assert p.stdout.splitlines() == ["t will be built because:", "  file changed: data/0007.csv",
                                     "    row changed: data/0007.csv:2"]


def test_a_fresh_process_reads_shards_and_a_damaged_shard_is_parsed_again(tmp_path):
    """A rebuild in a fresh process (the config changed, the data did not) reads every block
    from its shard and parses no file; a damaged shard costs a warning and a re-parse, and the
    build is the same."""
    import shutil
    rng = np.random.default_rng(1)
    (tmp_path / "data").mkdir()
    for i in range(40):
        rows = rng.normal(size=(5, 3))
        (tmp_path / "data" / f"{i:02d}.csv").write_text(
            "a,b,c,y\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{['no', 'yes'][int(r[0] > 0)]}\n"
                                  for r in rows))
    yaml = ("targets:\n  t:\n    sources: [data/*.csv]\n    loader: {label: y}\n"
            "    model: {hidden: [8]}\n    train: {epochs: EPOCHS, batch_size: 64}\n"
            "    export: {exporter: legacy}\n")
    (tmp_path / "s2build.yaml").write_text(yaml.replace("EPOCHS", "2"))
    run(["build"], tmp_path, check=0)
    first = (tmp_path / "build" / "t.onnx").read_bytes()
    (tmp_path / "s2build.yaml").write_text(yaml.replace("EPOCHS", "3"))
    p = run(["-v", "build"], tmp_path, check=0)
    assert "parsed 0 of 40 files" in p.stdout

    (tmp_path / "s2build.yaml").write_text(yaml.replace("EPOCHS", "2"))
    shutil.rmtree(tmp_path / ".s2build" / "cache")
    shard = sorted((tmp_path / ".s2build" / "shards").glob("??/*.s2s"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    p = run(["-v", "build"], tmp_path, check=0)
    assert "parsed 1 of 40 files" in p.stdout and "is unreadable" in p.stderr
    assert (tmp_path / "build" / "t.onnx").read_bytes() == first


def test_shard_keys_are_the_canonical_digest_of_content_extra_loader_and_version(tmp_path):
    """The shard path is built from strings for speed; it must equal the documented key."""
    from s2build.data import shards as data
    from s2build.engine import toolchain
    from s2build.engine.fingerprint import canonical_digest
    store = data.ShardStore(str(tmp_path))
    for loader, extra in [({"format": "csv", "label": "y", "classes": ["a", "ü"]},
                           {"a": "number", "b": "category"}),
                          ({"format": "images", "channels": 1, "size": [8, 8]}, "7")]:
        fields = {"content": "ab" * 32, "extra": extra, "loader": loader,
                  "v": data.SHARD_VERSION, "salt": toolchain.shard_salt()}
        key = canonical_digest(fields)
        assert data.shard_key("ab" * 32, store._json(loader), extra) == key


def test_memo_hits_neither_grow_its_byte_counter_nor_drop_it(tmp_path, monkeypatch):
    """A watch loads the same shards on every rebuild: each hit must leave the memo's byte
    count alone, so the memo is never dropped (and no shard is read from disk again)."""
    import hashlib

    from s2build.data import shards
    (tmp_path / "a.csv").write_text("a,b,y\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(50)))
    digest = hashlib.sha256((tmp_path / "a.csv").read_bytes()).hexdigest()
    loader = {"format": "csv", "label": "y", "features": None, "delimiter": ",",
              "task": "classification"}
    state = str(tmp_path / ".s2build")
    store = shards.ShardStore(state)
    kinds = store.file_kinds(str(tmp_path), "a.csv", digest, loader)
    (block,) = store.blocks(str(tmp_path), "a.csv", digest, loader, kinds)
    assert store.parsed_blocks == 1
    memo = shards.Memo(limit=3 * block.nbytes)   # room for three such blocks
    monkeypatch.setattr(shards, "MEMO", memo)
    for _ in range(1000):
        store = shards.ShardStore(state)         # a new build of the watch
        (got,) = store.blocks(str(tmp_path), "a.csv", digest, loader, kinds)
        assert store.parsed_blocks == 0
        assert memo.bytes == block.nbytes
    assert len(memo.entries) == 1
    assert got is next(iter(memo.entries.values()))

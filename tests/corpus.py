"""The bad-input corpus (issue 17): cases as data in tests/cases/*.yaml, run by test_corpus.py.

A case file is one category:

    project: csv              # the base project the cases change (BASES below), built once
    cases:
      - name: epoch-typo                     # unique across the corpus
        replace: [old, new]                  # s2build.yaml edits: one [old, new] pair or a list
        encoding: latin-1                    # the edited s2build.yaml's encoding (utf-8)
        files: {data/b.csv: "x0,x1,y\\n"}     # files written: text, !!binary, or generated:
                                             #   {repeat: S, times: N, before: S, after: S},
                                             #   {png: VALUE, size: N, cut: BYTES},
                                             #   {npy: LIST, dtype: D}, {npz: {NAME: LIST}},
                                             #   {table: parquet|feather, csv: TEXT}
        delete: [data/a.csv]                 # files removed
        argv: [build]                        # the command (default [build])
        exit: 3                              # its exit code
        where: "s2build.yaml:7:21"           # the location the message starts with (null: none
                                             #   exists, e.g. a bad flag)
        says: "unknown key 'epoch'"          # a substring of the message
        fix: "did you mean 'epochs'"         # a substring naming the fix, where one exists

test_corpus.py runs the categories of the yaml and the command line, test_corpus_data.py those
of data and user code (DATA_CATEGORIES), so that pytest-xdist runs the two halves side by side.
Each case runs the real CLI in a subprocess on a private copy of its built base project and
then checks: the exit code, no traceback, `LOCATION: ` and the message and fix in its output
(stderr, and stdout for `test`, whose report names a spec that cannot run);
nothing lost (every file outside `.s2build/` that the case did not write, the artifact included,
and every byte under `.s2build/cache/` as before; no `.s2tmp-` leftovers); and that undoing the
mistake builds back: `build` exits 0, trains nothing ("up to date") and the artifact's bytes
are the ones before the mistake.
"""

import hashlib
import io
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import run, sha256

CASES_DIR = Path(__file__).resolve().parent / "cases"
ARTIFACT = "build/t.onnx"
ENV = {"S2BUILD_NO_SERVER": "1"}
DATA_CATEGORIES = ("csv", "images", "jsonl", "tables", "usercode")

TARGET = """\
version: 1
targets:
  t:
    sources: [{sources}]
    loader: {loader}
    model: {model}
    train: {{epochs: 1, batch_size: 8, lr: 0.01, seed: 0}}
    export: {{exporter: legacy}}
    output: build/t.onnx
"""
CSV = "x0,x1,y\n" + "".join(f"{i / 10},{(i * 7 % 10) / 10},{i % 2}\n" for i in range(20))
JSONL = "".join(f'{{"x": [{i / 10}, {i % 3}], "y": {i % 2}}}\n' for i in range(20))
NET = """\
import torch


class Net(torch.nn.Module):
    def __init__(self, in_features, in_shape, out_features):
        super().__init__()
        self.l = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.l(x)
"""
SPECS = """\
    specs:
      - name: holdout accuracy
        gate: accuracy >= 0.0
      - name: a row
        example: {file: data/a.csv, line: 2}
"""


def png(value, size=6):
    """A size x size grayscale PNG of one value, as bytes."""
    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", (size, size), value).save(buf, format="PNG")
    return buf.getvalue()


def _csv(d):
    (d / "data" / "a.csv").write_text(CSV)
    return TARGET.format(sources="data/*.csv", model="{type: mlp, hidden: [4]}",
                         loader="{format: csv, label: y, task: classification, classes: 2}")


def _jsonl(d):
    (d / "data" / "a.jsonl").write_text(JSONL)
    return TARGET.format(sources="data/*.jsonl", model="{type: mlp, hidden: [4]}",
                         loader="{format: jsonl, features: [x], label: y, task: classification, "
                                "classes: 2}")


def _images(d):
    for cls, values in (("cat", (20, 40, 60, 80, 100)), ("dog", (150, 170, 190, 210, 230))):
        (d / "data" / cls).mkdir()
        for i, v in enumerate(values):
            (d / "data" / cls / f"{i}.png").write_bytes(png(v))
    return TARGET.format(sources="data/**/*.png", model="{type: mlp, hidden: [4]}",
                         loader="{format: images, task: classification}")


def _code(d):
    (d / "net.py").write_text(NET)
    return _csv(d).replace("{type: mlp, hidden: [4]}", "{type: net.py:Net}")


def _specs(d):
    return _csv(d) + SPECS


BASES = {"csv": _csv, "jsonl": _jsonl, "images": _images, "code": _code, "specs": _specs}


def make_base(kind, d):
    """Write base project `kind` into the new folder `d`."""
    (d / "data").mkdir(parents=True)
    (d / "s2build.yaml").write_text(BASES[kind](d))
    return d


def load():
    """{category: (base, [case, ...])} from tests/cases/*.yaml, names checked unique."""
    out, seen = {}, set()
    for path in sorted(CASES_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        for case in doc["cases"]:
            assert case["name"] not in seen, f"{path.name}: case {case['name']} twice"
            seen.add(case["name"])
        out[path.stem] = (doc["project"], doc["cases"])
    return out


def _content(value):
    """A file's bytes from a case's `files:` value (see the module docstring)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if "repeat" in value:
        return (value.get("before", "") + value["repeat"] * value["times"]
                + value.get("after", "")).encode()
    if "png" in value:
        return png(value["png"], value.get("size", 6))[:value.get("cut")]
    import numpy as np
    buf = io.BytesIO()
    if "npy" in value:
        np.save(buf, np.asarray(value["npy"], dtype=value.get("dtype")), allow_pickle=True)
    elif "npz" in value:
        np.savez(buf, **{k: np.asarray(v) for k, v in value["npz"].items()})
    else:                                     # {table: parquet | feather, csv: TEXT}
        import pyarrow.csv
        import pyarrow.feather
        import pyarrow.parquet
        table = pyarrow.csv.read_csv(io.BytesIO(value["csv"].encode()))
        write = {"parquet": pyarrow.parquet.write_table,
                 "feather": pyarrow.feather.write_feather}[value["table"]]
        write(table, buf)
    return buf.getvalue()


def digests(d):
    """{relative path: sha256} of every file: user files, the artifact, `.s2build/cache/`."""
    out = {}
    for p in Path(d).rglob("*"):
        rel = p.relative_to(d).as_posix()
        if p.is_file() and (not rel.startswith(".s2build/") or rel.startswith(".s2build/cache/")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def apply(case, d):
    """Make the mistake in project `d`; return what undo() needs (the files' old bytes)."""
    saved = {}
    edits = case.get("replace") or []
    if edits and isinstance(edits[0], str):
        edits = [edits]
    touched = ["s2build.yaml"] if edits else []
    touched += list(case.get("files", {})) + list(case.get("delete", []))
    for rel in touched:
        p = d / rel
        saved[rel] = p.read_bytes() if p.is_file() else None
    if edits:
        text = (d / "s2build.yaml").read_text()
        for old, new in edits:
            assert old in text, f"{case['name']}: {old!r} is not in s2build.yaml"
            text = text.replace(old, new, 1)
        (d / "s2build.yaml").write_bytes(text.encode(case.get("encoding", "utf-8")))
    for rel, value in case.get("files", {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(_content(value))
    for rel in case.get("delete", []):
        os.unlink(d / rel)
    return saved


def undo(saved, d):
    """Put back every file apply() wrote or removed; remove the folders it made."""
    for rel, data in saved.items():
        p = d / rel
        if data is None:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    for rel in saved:                         # folders the case made that are empty again
        parent = (d / rel).parent
        while parent != d and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def located(where, err):
    """Whether a line of `err` (after its indent: `test` reports a spec that cannot run under
    its name) starts at location `where` (or a finer one: `f:3` matches
    `f:3:7: ...`, `f` matches `f[2]: ...`)."""
    return re.search(rf"(?m)^ *{re.escape(where)}(:\d+|\[\d+\])*: ", err) is not None


def written(case):
    """The paths the case itself writes or removes (exempt from the nothing-lost check)."""
    edits = ["s2build.yaml"] if case.get("replace") else []
    return set(edits) | set(case.get("files", {})) | set(case.get("delete", []))


def params(data):
    """pytest params (base, case) of the data categories (data=True) or the others."""
    return [pytest.param(base, case, id=f"{cat}/{case['name']}")
            for cat, (base, cases) in sorted(load().items())
            if (cat in DATA_CATEGORIES) == data for case in cases]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """base -> a built project of that kind, each built once (lazily) per test module."""
    made = {}

    def get(base):
        if base not in made:
            d = make_base(base, tmp_path_factory.mktemp("base") / base)
            run(["build"], d, timeout=300, check=0, env=ENV)
            made[base] = d
        return made[base]
    return get


def check(case, project, d):
    """Run `case` on a copy `d` of built `project`: the checks the module docstring lists."""
    shutil.copytree(project, d)
    before = digests(d)
    artifact = sha256(d / ARTIFACT)
    saved = apply(case, d)
    p = run(case.get("argv", ["build"]), d, timeout=120, env=ENV)
    err = p.stderr + p.stdout
    assert p.returncode == case["exit"], f"exit {p.returncode}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    if case.get("where"):
        assert located(case["where"], err), err
    assert case["says"] in err, err
    if case.get("fix"):
        assert case["fix"] in err, err
    after = digests(d)
    lost = {k for k, v in before.items() if k not in written(case) and after.get(k) != v}
    assert not lost, f"changed or removed: {sorted(lost)}"
    assert not list(d.rglob(".s2tmp-*"))
    undo(saved, d)
    p = run(["build"], d, timeout=120, env=ENV)
    assert p.returncode == 0 and "up to date" in p.stdout, p.stdout + p.stderr
    assert sha256(d / ARTIFACT) == artifact


def make_test(data):
    """The parametrized test of one half (data=True: DATA_CATEGORIES), for a test module to
    bind as `test_corpus` beside the `built` fixture."""
    @pytest.mark.parametrize("base,case", params(data))
    def test_corpus(built, tmp_path, base, case):
        check(case, built(base), tmp_path / "p")
    return test_corpus

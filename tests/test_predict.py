"""`s2build predict` reads a file of the target's own format with the build's reader: the
loader's delimiter and feature columns, and NaN/inf rejected at `file:line` (exit 4)."""

import numpy as np

from conftest import run


def _project(d, sep):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    d.mkdir()
    (d / "data.csv").write_text(sep.join("abcy") + "\n" + "".join(
        sep.join([f"{r[0]:.3f}", f"{r[1]:.3f}", f"{r[2]:.3f}", str(l)]) + "\n"
        for r, l in zip(x, y)))
    (d / "s2build.yaml").write_text(
        "targets:\n  t:\n    sources: [data.csv]\n"
        f"    loader: {{label: y, delimiter: '{sep}', features: [b, a], classes: 2}}\n"
        "    model: {hidden: [8]}\n    train: {epochs: 3, batch_size: 16}\n"
        "    export: {exporter: legacy}\n")
    run(["build"], d, check=0)
    return d


def test_predict_honours_the_targets_delimiter(tmp_path):
    d = _project(tmp_path / "p", ";")
    # other column order, an extra column, no label: columns are found by name
    (d / "q.csv").write_text("c;a;b;note\n0.1;2.0;2.0;x\n0.1;-2.0;-2.0;y\n")
    p = run(["predict", "t", "q.csv"], d, check=0)
    rows = [line.split(": ")[:2] for line in p.stdout.splitlines()]
    assert [origin for origin, _ in rows] == ["q.csv:2", "q.csv:3"], p.stdout
    assert all(pred.split()[0] in ("0", "1") for _, pred in rows), p.stdout


def test_predict_rejects_inf_at_its_line_like_the_build(tmp_path):
    d = _project(tmp_path / "p", ",")
    (d / "q.csv").write_text("a,b\n1.0,2.0\n\n0.5,inf\n")
    p = run(["predict", "t", "q.csv"], d, check=4)
    assert p.stderr.strip().splitlines()[-1] == "q.csv:4: column 'b' is inf (fix or remove the row)"
    (d / "q.csv").write_text("a,b\n1.0,1_0\n")
    p = run(["predict", "t", "q.csv"], d, check=4)
    assert p.stderr.strip().splitlines()[-1] == (
        "q.csv:2: column 'b': '1_0' is not a number "
        "(fix the cell, or declare the column a category: loader.columns: {b: category})")
    (d / "q.jsonl").write_text('{"a": 1.0, "b": 2.0}\n{"a": Infinity, "b": 2.0}\n')
    p = run(["predict", "t", "q.jsonl"], d, check=4)
    assert p.stderr.strip().splitlines()[-1] == "q.jsonl:2: column 'a' is inf (fix or remove the row)"

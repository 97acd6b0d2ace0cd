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

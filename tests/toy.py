"""The toy project of the watch and incremental tests: two features decide a binary label.

`make_project(d)` writes it (yaml, two source files, a holdout file); `built_toy` / `toy` in
conftest.py build it once per session and hand each test a private copy.
"""

import random

YAML = """\
version: 1
targets:
  toy:
    sources: [data/*.csv]
    loader: {{format: csv, label: y, task: classification, classes: 2}}
    model: {{type: mlp, hidden: [64, 64]}}
    train: {{epochs: {epochs}, batch_size: 16, lr: 0.01, seed: 0}}
    holdout: {{sources: [holdout/*.csv]}}
    export: {{exporter: legacy}}
    output: build/toy.onnx
    specs:
      - name: holdout accuracy
        gate: accuracy >= 0.5
"""
HEADER = "x0,x1,x2,x3,y"


def rows(n, seed):
    """`n` rows of 4 random features, labelled by the sign of x0 + x1."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        x = [round(rnd.uniform(-1, 1), 3) for _ in range(4)]
        out.append(",".join(map(str, x)) + f",{int(x[0] + x[1] > 0)}")
    return out


def write_csv(path, lines):
    path.write_text("\n".join([HEADER, *lines]) + "\n")


def make_project(d, epochs=150):
    (d / "data").mkdir(parents=True)
    (d / "holdout").mkdir()
    (d / "s2build.yaml").write_text(YAML.format(epochs=epochs))
    write_csv(d / "data" / "a.csv", rows(40, 1))
    write_csv(d / "data" / "b.csv", rows(20, 2))
    write_csv(d / "holdout" / "h.csv", rows(20, 3))
    return d


def artifact(project):
    from s2build.compile.artifact import Artifact
    return Artifact(str(project / "build" / "toy.onnx"))


def predict(project, line):
    """Class the artifact predicts for one csv line of features and label."""
    import numpy as np
    art = artifact(project)
    x = np.asarray([[float(v) for v in line.split(",")[:4]]], dtype=np.float32)
    return art.classes[int(art.outputs(x).argmax(axis=1)[0])]


def relabel(path, index):
    """Flip the label of data row `index` (0-based, after the header); return the new line."""
    lines = path.read_text().splitlines()
    feats, label = lines[1 + index].rsplit(",", 1)
    lines[1 + index] = f"{feats},{1 - int(label)}"
    path.write_text("\n".join(lines) + "\n")
    return lines[1 + index]

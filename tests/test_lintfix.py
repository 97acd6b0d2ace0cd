"""`s2build lint --fix` / `--apply` (issue 16): a planted mislabelled image is moved back to its
class folder, a CSV label cell is rewritten in place and a duplicate line dropped, and the next
lint no longer reports them. Real builds, real files, the real CLI."""

import json
import random

from conftest import run
from corpus import png

ENV = {"S2BUILD_NO_SERVER": "1"}

IMAGES_YAML = """\
version: 1
targets:
  shades:
    sources: [data/**/*.png]
    loader: {format: images, task: classification}
    model: {type: mlp, hidden: [16]}
    train: {epochs: 60, batch_size: 8, lr: 0.01, seed: 0}
    export: {exporter: legacy}
"""

CSV_YAML = """\
version: 1
targets:
  sign:
    sources: [data/*.csv]
    loader: {format: csv, label: y, task: classification, classes: [neg, pos]}
    model: {type: mlp, hidden: [16]}
    train: {epochs: 60, batch_size: 8, lr: 0.01, seed: 0}
    export: {exporter: legacy}
"""


def lint_json(d):
    p = run(["lint", "--json", "--fail-on", "never"], d, timeout=300, env=ENV)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["diagnostics"]


def test_apply_moves_a_mislabelled_image_back_and_lint_no_longer_reports_it(tmp_path):
    d = tmp_path / "p"
    for cls, values in (("dark", range(10, 70, 3)), ("bright", range(180, 240, 3))):
        (d / "data" / cls).mkdir(parents=True)
        for v in values:
            (d / "data" / cls / f"{v}.png").write_bytes(png(v))
    (d / "data" / "dark" / "planted.png").write_bytes(png(200))     # a bright image
    (d / "s2build.yaml").write_text(IMAGES_YAML)
    found = [x for x in lint_json(d) if x["check"] == "label-error"]
    assert [x["origin"] for x in found] == ["data/dark/planted.png"], found
    assert found[0]["fix"] == {"kind": "relabel", "to": "bright"}

    p = run(["lint", "--fix", "--fail-on", "never"], d, timeout=300, env=ENV)
    assert "data/dark/planted.png: warning[label-error]" in p.stdout, p.stdout
    assert "  fix: move it to data/bright/planted.png" in p.stdout, p.stdout

    p = run(["lint", "--apply", "data/dark/planted.png"], d, timeout=300, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "data/dark/planted.png: fixed: move it to data/bright/planted.png" in p.stdout
    assert not (d / "data" / "dark" / "planted.png").exists()
    assert (d / "data" / "bright" / "planted.png").read_bytes() == png(200)
    assert not [x for x in lint_json(d) if x["check"] == "label-error"]


def test_apply_rewrites_the_label_cell_and_drops_the_duplicate_line(tmp_path):
    d = tmp_path / "p"
    (d / "data").mkdir(parents=True)
    rnd = random.Random(0)
    rows = []
    for _ in range(60):
        x0, x1 = round(rnd.uniform(-1, 1), 3), round(rnd.uniform(-1, 1), 3)
        rows.append(f"{x0},{x1},{'pos' if x0 + x1 > 0 else 'neg'}")
    rows[10] = "0.9,0.8,neg"                        # clearly pos, labelled neg: line 12
    rows.append(rows[20])                           # a duplicate of line 22: line 62
    text = "x0,x1,y\n" + "\n".join(rows) + "\n"
    (d / "data" / "a.csv").write_text(text)
    (d / "s2build.yaml").write_text(CSV_YAML)
    diags = {(x["origin"], x["check"]): x for x in lint_json(d)}
    assert diags[("data/a.csv:12", "label-error")]["fix"] == {"kind": "relabel", "to": "pos"}
    assert diags[("data/a.csv:62", "duplicate")]["fix"] == {"kind": "drop", "to": None}

    p = run(["lint", "--fix", "--fail-on", "never"], d, timeout=300, env=ENV)
    assert "  fix: set y to pos" in p.stdout and "  fix: delete line 62" in p.stdout, p.stdout

    p = run(["lint", "--apply", "data/a.csv:12", "data/a.csv:62"], d, timeout=300, env=ENV)
    assert p.returncode == 0, p.stdout + p.stderr
    want = text.replace("0.9,0.8,neg\n", "0.9,0.8,pos\n")
    want = want[:want.rindex(rows[20])]             # the last line (the duplicate) dropped
    assert (d / "data" / "a.csv").read_text() == want
    left = {(x["origin"], x["check"]) for x in lint_json(d)}
    assert ("data/a.csv:12", "label-error") not in left
    assert not [o for o, c in left if c == "duplicate"]

    p = run(["lint", "--apply", "data/a.csv:3"], d, timeout=300, env=ENV)
    assert p.returncode == 2 and "--apply data/a.csv:3: no fixable diagnostic there" in p.stderr

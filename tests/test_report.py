"""`s2build report` through the real CLI on a copy of the wine example (6 epochs, the legacy
exporter): the page is written atomically, is well-formed HTML with no URL, draws one curve
point per epoch (training loss, holdout loss, holdout accuracy), a confusion matrix over the
holdout rows, the specs (PASSED, FAILED with the yaml location, names escaped), lint, blame
queries with a csv row's cells; a target without a build says so; `ci --html`; the history of
builds and a saved seed run. Plus the pure pieces (svg.py, gather.confusion, thumbs.py,
record.builds). The browser's view of the page: tests/test_report_browser.py."""

import json
import os
import re
import textwrap
from html.parser import HTMLParser

import pytest

from conftest import copy_example, private_copy, run

EPOCHS = 6
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


class Strict(HTMLParser):
    """Every element closed, in order; the text of <svg> polylines and data-count cells kept."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.polylines, self.counts = [], [], [], []
        self.text, self.charts, self.srcs = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "polyline":
            self.polylines.append(a.get("points", ""))
            self.charts[-1][1].append(a.get("points", ""))
        if tag == "svg":
            self.charts.append((a.get("aria-label", ""), []))
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        if tag == "td" and "data-count" in a:
            self.counts.append(int(a["data-count"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag == "polyline":
            self.polylines.append(dict(attrs).get("points", ""))
            self.charts[-1][1].append(dict(attrs).get("points", ""))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(text):
    p = Strict()
    p.feed(text)
    p.close()
    assert not p.problems, p.problems[:5]
    assert p.stack == [], p.stack
    p.text = "".join(p.text)
    return p


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Wine at EPOCHS epochs, built by `s2build report` itself (nothing built before)."""
    d = copy_example("wine", tmp_path_factory.mktemp("report") / "wine")
    yaml = d / "s2build.yaml"
    yaml.write_text(yaml.read_text().replace("epochs: 40", f"epochs: {EPOCHS}").replace(
        "    output: build/wine.onnx", "    export: {exporter: legacy}\n    output: build/wine.onnx"))
    (d / "build").mkdir()
    old = d / "build" / "report.html"
    old.write_text("old report\n")
    os.link(old, d / "old-link.html")           # the old inode keeps the old bytes
    p = run(["report"], d, check=0)
    return d, p


def test_report_builds_then_draws_everything(reported):
    d, p = reported
    assert "wine: built" in p.stderr
    assert re.search(r"^report: build/report\.html \(1 of 1 targets built; specs: 5 passed, "
                     r"0 failed\)$", p.stdout, re.M), p.stdout
    page = (d / "build" / "report.html").read_text()
    # atomic: a new file replaced the old one (tmp + os.replace), no temporary left behind
    assert (d / "old-link.html").read_text() == "old report\n"
    assert not [f for f in os.listdir(d / "build") if f.startswith(".s2tmp-")]
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "src=" not in page and "<link" not in page             # a table: no thumbnails
    h = parse(page)
    facts = json.loads((d / "build" / "wine.onnx.json").read_text())
    assert len(facts["history"]) == EPOCHS
    curve = facts["holdout_history"]                   # per epoch, on every holdout row here
    assert len(curve["loss"]) == len(curve["values"]) == EPOCHS and curve["metric"] == "accuracy"
    assert curve["rows"] == curve["of"] == facts["rows"]["holdout"]
    assert curve["values"][-1] == pytest.approx(facts["metrics"]["accuracy"])
    charts = dict(h.charts)
    assert [len(p.split()) for p in charts["loss per epoch"]] == [EPOCHS, EPOCHS]   # 2 lines
    assert [len(p.split()) for p in charts["holdout accuracy per epoch"]] == [EPOCHS]
    assert len(re.findall(r'<circle class="pt" data-x="\d+"', page)) == 2 * EPOCHS
    assert "training loss" in h.text and "holdout loss" in h.text
    assert sum(h.counts) == facts["rows"]["holdout"]                # the holdout rows
    assert len(h.counts) == 9                                     # 3 classes x 3
    for name in ("a textbook cultivar-0 wine", "holdout accuracy", "holdout macro F1"):
        assert re.search(rf"{re.escape(name)}\s*PASSED", h.text), name
    assert "FAILED" not in h.text
    assert facts["build_key"] in h.text and facts["artifact_sha256"] in h.text
    assert "Lint" in h.text and "errors," in h.text
    assert "logits, probabilities" in h.text                    # the artifact's outputs
    # blame: up to 3 holdout queries, each with 5 training rows and their csv cells
    blame = h.text[h.text.index("Blame"):h.text.index("Seeds")]
    queries = re.findall(r"(wrong|least sure): (data/wine-\d\.csv:\d+), labelled", blame)
    assert 1 <= len(queries) <= 3, blame
    assert blame.count("alcohol=") == 6 * len(queries), blame      # the query's and its rows' cells
    assert "no seed run recorded: s2build seeds wine -n 5" in h.text
    assert re.search(r"History of builds.*never built", h.text, re.S)


def test_a_failing_spec_shows_failed_at_its_yaml_line_and_names_are_escaped(reported, tmp_path):
    d = private_copy(reported[0], tmp_path, "wine")
    yaml = d / "s2build.yaml"
    text = yaml.read_text().replace("- name: holdout accuracy\n        gate: accuracy >= 0.9",
                                    '- name: strict <b>"gate"</b> & more\n'
                                    "        gate: accuracy > 1")
    yaml.write_text(text)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "accuracy > 1" in t)
    p = run(["report", "-o", "out/r.html"], d, check=0)          # specs do not retrain
    assert "built in" not in p.stderr
    assert "specs: 4 passed, 1 failed" in p.stdout
    page = (d / "out" / "r.html").read_text()
    h = parse(page)
    assert '<b>"gate"</b>' not in page
    assert "strict &lt;b&gt;&quot;gate&quot;&lt;/b&gt; &amp; more" in page
    assert re.search(rf'strict <b>"gate"</b> & more\s*FAILED\s*s2build\.yaml:{line}:\d+\s*'
                     r"accuracy is 0\.\d+, the gate requires accuracy > 1", h.text), h.text[-2000:]


def test_a_target_without_a_build_says_so(reported, tmp_path):
    d = private_copy(reported[0], tmp_path, "wine")
    csv = d / "data" / "wine-2.csv"
    rows = csv.read_text().splitlines()
    rows[4] = "abc" + rows[4][rows[4].index(","):]
    csv.write_text("\n".join(rows) + "\n")
    p = run(["report"], d, check=4)                  # the build's own exit code, page written
    assert "no build: wine" in p.stdout
    h = parse((d / "build" / "report.html").read_text())
    assert "no build of the current sources: the build failed (exit 4)" in h.text
    assert "data/wine-2.csv:5" in h.text


def test_ci_writes_the_same_report(reported, tmp_path):
    d = private_copy(reported[0], tmp_path, "wine")
    run(["ci", "--html", "ci.html"], d, check=0)
    h = parse((d / "ci.html").read_text())
    assert re.search(r"holdout accuracy\s*PASSED", h.text)
    assert sum(h.counts) == json.loads((d / "build" / "wine.onnx.json").read_text())["rows"][
        "holdout"]


def test_history_of_builds_and_a_saved_seed_run(reported, tmp_path):
    d = private_copy(reported[0], tmp_path, "wine")
    p = run(["seeds", "wine", "-n", "2"], d, check=0)          # seed 0 is the build: restored
    saved = json.loads((d / ".s2build" / "seeds" / "wine.json").read_text())
    assert saved["target"] == "wine" and sorted(saved["keys"]) == ["0", "1"]
    flips = saved["report"]["flipping"]
    assert flips >= 1                     # 6 epochs: a few holdout rows flip between seeds
    assert f"{saved['report']['holdout_rows']} holdout rows" in p.stdout
    yaml = d / "s2build.yaml"
    six = yaml.read_text()
    yaml.write_text(six.replace(f"epochs: {EPOCHS}", f"epochs: {EPOCHS + 1}"))
    run(["report", "-o", "r2.html"], d, check=0)                # builds, then draws
    h = parse((d / "r2.html").read_text())
    assert "this seed run is of an earlier recipe" in h.text
    yaml.write_text(six)
    run(["report", "-o", "r3.html"], d, check=0)                # restored from the cache
    h = parse((d / "r3.html").read_text())
    builds = json.loads((d / "build" / "wine.onnx.json").read_text())["builds"]
    assert [b["restored"] for b in builds] == [False, False, True]
    assert builds[1]["changes"] == [f"config changed: train.epochs ({EPOCHS} -> {EPOCHS + 1})"]
    assert builds[0]["key"] == builds[2]["key"] != builds[1]["key"]
    assert [len(p.split()) for p in dict(h.charts)["accuracy over builds"]] == [3]
    history = h.text[h.text.index("History of builds"):]
    assert history.index("restored from cache") < history.index("train.epochs") \
        < history.index("never built")                          # the latest first
    assert "earlier recipe" not in h.text                       # the seed run's recipe again
    seeds = h.text[h.text.index("Seeds"):h.text.index("History of builds")]
    assert re.search(rf"2 seeds, run .*: disagreement [\d.]+% of "
                     rf"{saved['report']['holdout_rows']} holdout rows .*; {flips} rows flip",
                     seeds), seeds
    for row in saved["report"]["flipping_rows"]:              # origin, per-seed predictions
        assert row["origin"] in seeds
    assert seeds.count("alcohol=") == flips                     # each flipping row's cells
    assert "holdout accuracy" in seeds and "of 2 seeds" in seeds


def test_regression_draws_predicted_against_true(tmp_path):
    (tmp_path / "data").mkdir()
    rows = ["x1,x2,y"] + [f"{a / 10:.1f},{b / 10:.1f},{a / 10 + 2 * b / 10:.2f}"
                          for a in range(-5, 6) for b in range(-5, 6)]
    (tmp_path / "data" / "lin.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s2build.yaml").write_text(textwrap.dedent("""\
        version: 1
        targets:
          lin:
            sources: [data/lin.csv]
            loader: {label: y, task: regression}
            model: {hidden: [8]}
            train: {epochs: 4, lr: 0.01, batch_size: 16}
            export: {exporter: legacy}
    """))
    run(["report", "-o", "lin.html"], tmp_path, check=0)
    page = (tmp_path / "lin.html").read_text()
    h = parse(page)
    facts = json.loads((tmp_path / "build" / "lin.onnx.json").read_text())
    assert len(h.polylines[0].split()) == 4 and h.counts == []          # no confusion matrix
    scatter = page[page.index('<svg class="chart scatter"'):]
    scatter = scatter[: scatter.index("</svg>")]
    assert scatter.count('<circle class="pt"') == facts["rows"]["holdout"]
    assert "Predicted against true" in h.text and "no specs" in h.text


def test_report_help_has_an_example():
    p = run(["report", "--help"], ".", check=0)
    assert "examples:" in p.stdout and "s2build report wine -o wine.html" in p.stdout


# --- the pure pieces -----------------------------------------------------------------------

def test_line_chart_one_point_per_finite_value_and_escaped_labels():
    from s2build.report import svg
    s = svg.line_chart([1.0, float("nan"), 0.5, 0.25], title="<loss & co>", ylabel='"l"')
    h = parse(s)
    assert len(h.polylines[0].split()) == 3
    assert "&lt;loss &amp; co&gt;" in s and "<loss" not in s
    assert parse(svg.line_chart([])).polylines == [""]
    assert parse(svg.line_chart([2.0])).polylines[0].count(",") == 1


def test_scatter_one_circle_per_pair():
    from s2build.report import svg
    s = svg.scatter([1, 2, 3, float("inf")], [1.5, 2, 2.5, 4])
    parse(s)
    assert s.count('<circle class="pt"') == 3


def test_confusion_counts_precision_recall():
    import numpy as np
    from s2build.report.gather import confusion
    y = np.array([0, 0, 1, 1, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 1]]                      # predictions 0 1 1 1 1
    cm = confusion(y, logits, ["a", "b", "c"])
    assert cm["matrix"] == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
    assert cm["recall"] == [0.5, 1.0, 0.0]
    assert cm["precision"][0] == 1.0 and cm["precision"][1] == 0.5 and cm["precision"][2] is None
    binary = confusion(np.array([0, 1, 1]), np.array([[-1.0], [2.0], [-0.5]]), ["no", "yes"])
    assert binary["matrix"] == [[1, 0], [1, 1]]


def test_lines_draw_each_series_with_its_class_and_a_legend():
    from s2build.report import svg
    s = svg.lines([("training loss", [3, 2, 1]), ("holdout <loss>", [3.5, None, 2])])
    h = parse(s)
    assert [len(p.split()) for p in h.polylines] == [3, 2]
    assert s.count('<circle class="pt s1"') == 2 and "holdout &lt;loss&gt;" in s


def test_thumbnails_are_sharp_bounded_data_uris(tmp_path):
    import base64
    import io
    from types import SimpleNamespace

    from PIL import Image

    from s2build.report.thumbs import Thumbs
    (tmp_path / "d").mkdir()
    Image.new("L", (8, 8), 0).save(tmp_path / "d" / "a.png")
    im = Image.new("L", (8, 8), 0)
    im.putpixel((3, 4), 255)
    im.save(tmp_path / "d" / "b.png")
    Image.new("RGB", (300, 150), (9, 9, 9)).save(tmp_path / "d" / "big.png")
    (tmp_path / "d" / "bad.png").write_bytes(b"not a png")
    t = SimpleNamespace(root=str(tmp_path), config={"loader": {"format": "images"}})
    thumbs = Thumbs(t, limit=3)
    uri = thumbs("d/b.png")
    assert uri.startswith("data:image/png;base64,")
    small = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert small.size == (64, 64)                           # 8x8 enlarged 8 times, sharp:
    assert small.getpixel((3 * 8, 4 * 8)) == small.getpixel((3 * 8 + 7, 4 * 8 + 7)) == 255
    assert small.getpixel((3 * 8 - 1, 4 * 8)) == 0
    big = thumbs("d/big.png")
    assert Image.open(io.BytesIO(base64.b64decode(big.split(",", 1)[1]))).size == (64, 32)
    assert thumbs("d/bad.png") is None and thumbs("../outside.png") is None
    assert thumbs("d/b.png") == uri                         # seen: no new thumbnail
    assert thumbs("d/a.png") is None and thumbs.shown == 2   # past the limit (3 origins)
    table = SimpleNamespace(root=str(tmp_path), config={"loader": {"format": "csv"}})
    assert Thumbs(table)("d/b.png") is None


def test_the_history_of_builds_is_bounded_and_survives_a_corrupt_sidecar(tmp_path):
    from types import SimpleNamespace

    from s2build.engine import record
    from s2build.engine.plan import Reason
    out = tmp_path / "m.onnx"
    t = SimpleNamespace(name="m", output=str(out))
    step = SimpleNamespace(reasons=[Reason("changed", f"file changed: f{i}") for i in range(12)],
                           inputs=SimpleNamespace(key="ab" * 32))
    side = {"build_key": "cd" * 32, "mode": "release", "metrics": {"accuracy": 0.5},
            "built_at": "then", "restored_from_cache": False}
    first = record.builds(t, step, side)                     # no sidecar yet
    assert len(first) == 1 and first[0]["key"] == "cd" * 6 and first[0]["at"] == "then"
    assert len(first[0]["changes"]) == record.MAX_CHANGES and first[0]["changes"][-1] == "+3 more"
    out.with_name("m.onnx.json").write_text(json.dumps({"target": "m", "builds": first * 60}))
    assert len(record.builds(t, step, side)) == record.MAX_BUILDS
    out.with_name("m.onnx.json").write_text(json.dumps({"target": "other", "builds": first}))
    assert len(record.builds(t, step, side)) == 1           # another target's history
    for bad in ("{", "[]", '{"target": "m", "builds": 3}', '{"target": "m", "builds": [1]}'):
        out.with_name("m.onnx.json").write_text(bad)
        assert len(record.builds(t, step, side)) == 1, bad

"""lint: diagnostics point at real origins, and --fail-on makes CI fail."""

import json
import shutil

from conftest import copy_example, run


def test_wrong_csv_label_is_reported_at_its_line(wine):
    f = wine / "data" / "wine-2.csv"
    lines = f.read_text().splitlines(keepends=True)
    assert lines[4].rstrip().endswith(",0")                 # line 5: a clear cultivar-0 wine
    lines[4] = lines[4].rstrip()[:-1] + "2\n"
    f.write_text("".join(lines))
    p = run(["lint", "--json"], wine, check=0)
    diags = json.loads(p.stdout)["diagnostics"]
    found = [d for d in diags if d["origin"] == "data/wine-2.csv:5"]
    assert found and found[0]["check"] == "label-error", diags
    assert found[0]["message"].startswith("labelled 2, the data says 0")
    text = run(["lint"], wine, check=0).stdout
    assert "data/wine-2.csv:5: warning[label-error]: labelled 2, the data says 0 (confidence " in text


def test_wrongly_foldered_image_is_reported_at_its_path(tmp_path):
    d = copy_example("digits", tmp_path / "digits")
    shutil.move(d / "data" / "3" / "0003.png", d / "data" / "8" / "0003.png")
    p = run(["lint", "--json"], d, check=0)
    diags = json.loads(p.stdout)["diagnostics"]
    found = [x for x in diags if x["origin"] == "data/8/0003.png"]
    assert found and found[0]["check"] == "label-error"
    assert found[0]["message"].startswith("labelled 8, the data says 3")


def test_fail_on_error_with_conflicting_labels(wine):
    f = wine / "data" / "wine-3.csv"
    rows = f.read_text().splitlines()
    conflicting = rows[1][:-1] + ("1" if rows[1].endswith("0") else "0")
    f.write_text("\n".join(rows + [rows[2], conflicting]) + "\n")
    p = run(["lint"], wine, check=11)                   # an error fails by default, as a compiler
    assert f"data/wine-3.csv:{len(rows) + 2}: error[conflicting-label]: same input as " \
           f"data/wine-3.csv:2, labelled" in p.stdout
    assert f"data/wine-3.csv:{len(rows) + 1}: warning[duplicate]: duplicate of data/wine-3.csv:3" \
        in p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("lint: 1 errors")
    assert run(["lint", "--fail-on", "never"], wine, check=0).stdout == p.stdout
    out = [line.split(": ")[0] for line in p.stdout.splitlines() if not line.startswith("lint:")]
    files = [(o.rsplit(":", 1)[0], int(o.rsplit(":", 1)[1])) for o in out if ".csv:" in o]
    assert files == sorted(files), out                  # file order, as a compiler prints


def test_inf_cells_are_all_reported(wine):
    """NaN in a table is a missing value (imputed, see test_tables); inf is an error, and lint
    finds every such cell in one pass."""
    f = wine / "data" / "wine-1.csv"
    lines = f.read_text().splitlines(keepends=True)
    for i in (3, 9):
        lines[i] = "inf" + lines[i][lines[i].index(","):]
    f.write_text("".join(lines))
    p = run(["lint", "--fail-on", "error"], wine, check=11)
    out = p.stdout.splitlines()
    assert "data/wine-1.csv:4: error[non-finite]: column 'alcohol' is inf" in out
    assert "data/wine-1.csv:10: error[non-finite]: column 'alcohol' is inf" in out
    assert "lint: model-based checks skipped: the data does not load" in out


def test_a_flood_is_budgeted_per_check(wine):
    """30 duplicates print the 20 strongest (in file order) and a count of the rest; --max 0
    and --json give all of them; warnings alone exit 0."""
    f = wine / "data" / "wine-3.csv"
    rows = f.read_text().splitlines()
    f.write_text("\n".join(rows + rows[1:31]) + "\n")
    p = run(["lint"], wine, check=0)
    dup = [line for line in p.stdout.splitlines() if "warning[duplicate]" in line]
    assert len(dup) == 20, p.stdout
    assert "lint: duplicate: 10 more not shown (--max 0 shows all, --json lists all)" in p.stdout
    assert "lint: 0 errors, " in p.stdout
    everything = run(["lint", "--max", "0"], wine, check=0).stdout
    assert sum("warning[duplicate]" in line for line in everything.splitlines()) == 30
    diags = json.loads(run(["lint", "--json"], wine, check=0).stdout)["diagnostics"]
    assert sum(d["check"] == "duplicate" for d in diags) == 30

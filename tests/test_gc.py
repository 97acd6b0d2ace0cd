"""`s2build gc` and the cache size in `status` (store/gc.py), on real builds of the toy project:
pinned entries (s2build.lock, state.json, a dev build's parent) survive, the others go least
recently used first (a restore counts as a use), and --dry-run removes nothing."""

import json

from conftest import run
from toy import make_project, relabel, rows, write_csv


def _key(d):
    return json.loads((d / ".s2build" / "state.json").read_text())["targets"]["toy"]["key"]


def _entries(d):
    root = d / ".s2build" / "cache"
    return {p.parent.name: sum(f.stat().st_size for f in p.parent.iterdir())
            for p in root.glob("*/*/record.json")}


def test_gc_keeps_pinned_entries_and_removes_the_least_recently_used(tmp_path):
    d = make_project(tmp_path / "toy", epochs=3)
    run(["lock"], d, check=0)                                   # K1: pinned by s2build.lock
    k1 = _key(d)
    v1 = (d / "data" / "b.csv").read_text()
    write_csv(d / "data" / "b.csv", rows(21, 2))
    run(["build"], d, check=0)
    k2 = _key(d)
    v2 = (d / "data" / "b.csv").read_text()
    write_csv(d / "data" / "b.csv", rows(22, 2))
    run(["build"], d, check=0)
    k3 = _key(d)
    (d / "data" / "b.csv").write_text(v2)
    assert "toy: restored from cache" in run(["build"], d, check=0).stdout   # K2 used again
    write_csv(d / "data" / "b.csv", rows(23, 2))
    run(["build"], d, check=0)
    k4 = _key(d)                                                # pinned by state.json
    sizes = _entries(d)
    assert set(sizes) == {k1, k2, k3, k4}

    p = run(["status"], d, check=0)
    assert p.stdout.splitlines()[-1] == f"cache: 4 entries, {sum(sizes.values()) / 2**20:.1f} MB"
    assert json.loads(run(["status", "--json"], d, check=0).stdout)["cache"] == \
        {"entries": 4, "bytes": sum(sizes.values())}

    cap = sum(sizes.values()) - sizes[k3]                       # room for all but one
    p = run(["gc", "--max-size", str(cap), "--dry-run"], d, check=0)
    assert p.stdout.splitlines()[0].startswith(f"would remove {k3[:12]} (")
    assert set(_entries(d)) == {k1, k2, k3, k4}                 # a dry run removes nothing
    p = run(["gc", "--max-size", str(cap)], d, check=0)
    assert p.stdout.splitlines()[0].startswith(f"removed {k3[:12]} (")   # K3, not the newer K2
    assert set(_entries(d)) == {k1, k2, k4}
    p = run(["gc", "--max-size", "0"], d, check=0)
    assert set(_entries(d)) == {k1, k4}
    assert "kept 2 (" in p.stdout and "2 pinned by s2build.lock, state.json" in p.stdout
    assert not list((d / ".s2build" / "tmp").glob("*"))          # nothing left half removed
    assert run(["build"], d, check=0).stdout.strip() == "toy: up to date"
    (d / "data" / "b.csv").write_text(v1)                       # the locked build restores
    assert "toy: restored from cache" in run(["build"], d, check=0).stdout
    assert run(["gc", "--max-size", "2 parsecs"], d, check=2).stderr.startswith(
        "s2build: error: --max-size 2 parsecs: not a size")


def test_gc_keeps_the_parent_of_a_dev_build(toy):
    d = toy                                  # built with enough epochs to fine-tune from
    parent = _key(d)
    relabel(d / "data" / "a.csv", 3)
    p = run(["build", "--dev"], d, check=0)
    assert f"incremental from {parent[:12]}" in p.stdout
    dev = _key(d)
    assert dev != parent
    run(["gc", "--max-size", "0"], d, check=0)
    assert set(_entries(d)) == {parent, dev}                    # the parent is pinned

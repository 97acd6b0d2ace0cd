"""s2build.lock: the format (round trip, damage at every line), `s2build lock`, and two git
branches that change different targets merging without conflict."""

import os
import subprocess

import pytest

from conftest import run
from s2build.release import lockfile
from s2build.errors import LOCK_STALE, LockStaleError

ENTRY = {
    "artifact": "a" * 64, "key": "b" * 64, "mode": "release", "config": "c" * 64,
    "metrics": {"accuracy": "0.981818", "f1": "0.98"},
    "source": {"data/b.csv": "2" * 64, "data/a file.csv": "1" * 64},
    "holdout": {"data/test.csv": "3" * 64}, "code": {"net.py": "4" * 64},
    "dep": {"base": "5" * 64}, "specdata": {}, "toolchain": {"torch": "2.5.1", "threads": "1"},
}


def test_format_is_sorted_line_oriented_and_round_trips():
    text = lockfile.format_lock({"zeta": dict(ENTRY), "alpha": dict(ENTRY, dep={})})
    lines = text.splitlines()
    assert lines[0] == lockfile.HEADER and lines[1] == ""
    alpha = [l for l in lines if l.startswith("alpha ")]
    assert alpha == sorted(alpha)
    assert lines[2] == "[alpha]" and lines[3] == alpha[0]    # each block opens with its header
    assert lines[len(alpha) + 3] == "" and lines[len(alpha) + 4] == "[zeta]"
    assert 'zeta source "data/a file.csv" ' + "1" * 64 in lines
    assert "zeta toolchain threads=1 torch=2.5.1" in lines
    back = lockfile.parse_lock(text)
    assert back["zeta"] == ENTRY
    assert lockfile.format_lock(back) == text


def test_the_lock_check_says_file_changes_in_explains_words():
    """One differ of {path: digest} dicts (engine/explain.py): a relabelled image (its bytes
    under another folder) is a move for the lock check too, not a removal and an addition."""
    from s2build.engine import explain
    old = {"data/0/a.png": "1" * 64, "data/0/b.png": "2" * 64, "data/0/c.png": "3" * 64}
    new = {"data/1/a.png": "1" * 64, "data/0/b.png": "9" * 64, "data/2/e.png": "5" * 64}
    locked, current = dict(ENTRY, source=old), dict(ENTRY, source=new)
    want = ["file moved: data/0/a.png -> data/1/a.png", "file changed: data/0/b.png",
            "file removed: data/0/c.png", "file added: data/2/e.png"]
    assert lockfile.source_differences(locked, current) == want
    assert [r.text for r in explain.file_changes("file-", "file", old, new)] == want


def test_damage_at_any_line_is_a_lock_error_never_a_crash():
    text = lockfile.format_lock({"wine": ENTRY})
    lines = text.splitlines()
    assert len(lines) == 15
    damaged_any = 0
    for n, line in enumerate(lines, 1):
        for bad in (line[: len(line) // 2], line + " extra", "<<<<<<< HEAD"):
            damaged = list(lines)
            damaged[n - 1] = bad
            if damaged == lines:                   # half of an empty line: nothing damaged
                continue
            with pytest.raises(LockStaleError) as e:
                lockfile.parse_lock("\n".join(damaged))
            assert e.value.exit_code == LOCK_STALE
            assert e.value.location == f"s2build.lock:{n}", (n, bad)
            damaged_any += 1
    assert damaged_any == 3 * len(lines) - 1


def test_a_v1_lock_still_reads_and_facts_stay_in_their_block():
    v2 = lockfile.format_lock({"wine": ENTRY})
    v1 = "\n".join(l for l in v2.splitlines() if not l.startswith("[")).replace(
        lockfile.HEADER, lockfile.HEADER_V1)
    assert lockfile.parse_lock(v1) == {"wine": ENTRY}
    mixed = v2.replace("wine mode release", "zeta mode release")
    with pytest.raises(LockStaleError) as e:
        lockfile.parse_lock(mixed)
    assert str(e.value).startswith("s2build.lock:12: a fact of 'zeta' in the block of 'wine'")


def test_conflict_markers_are_named():
    with pytest.raises(LockStaleError) as e:
        lockfile.parse_lock(lockfile.HEADER + "\n<<<<<<< HEAD\n")
    assert str(e.value) == ("s2build.lock:2: merge conflict marker (run `s2build lock` to write "
                            "it again from the builds)")


YAML = """\
version: 1
targets:
"""
TARGET = """\
  {name}:
    sources: [data/{name}.csv]
    loader: {{label: label, classes: 2}}
    model: {{hidden: [4]}}
    train: {{epochs: 2}}
    export: {{exporter: legacy}}
"""


def tiny_project(root, names=("a", "b")):
    """Tiny two-feature targets that build in a few seconds (legacy exporter, 2 epochs)."""
    (root / "data").mkdir(parents=True)
    for i, name in enumerate(names):
        rows = [f"{(j * 7 + i) % 11 / 10:.1f},{(j * 3) % 7 / 10:.1f},{j % 2}" for j in range(24)]
        (root / "data" / f"{name}.csv").write_text("x1,x2,label\n" + "\n".join(rows) + "\n")
    (root / "s2build.yaml").write_text(YAML + "".join(TARGET.format(name=n) for n in names))
    return root


def git(root, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    p = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false",
                        *args], cwd=root, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def append_row(path, row):
    path.write_text(path.read_text() + row + "\n")


def test_branches_changing_different_targets_merge_without_conflict(tmp_path):
    d = tiny_project(tmp_path / "proj")
    (d / ".gitignore").write_text(".s2build/\nbuild/\n")
    p = run(["lock"], d, check=0)
    assert p.stdout.splitlines()[-1] == "s2build.lock: written (2 targets)"
    base = (d / "s2build.lock").read_text()
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "base")

    git(d, "checkout", "-q", "-b", "edit-a")
    append_row(d / "data" / "a.csv", "0.9,0.9,1")
    p = run(["lock"], d, check=0)
    assert p.stdout.splitlines() == ["a: built in " + p.stdout.split("a: built in ")[1].split("\n")[0],
                                     "b: up to date", "s2build.lock: written (2 targets)"]
    git(d, "commit", "-q", "-am", "a: one more row")
    lock_a = (d / "s2build.lock").read_text()

    git(d, "checkout", "-q", "main")
    git(d, "checkout", "-q", "-b", "edit-b")
    append_row(d / "data" / "b.csv", "0.1,0.1,0")
    run(["lock"], d, check=0)
    git(d, "commit", "-q", "-am", "b: one more row")
    lock_b = (d / "s2build.lock").read_text()

    changed_a = set(lock_a.splitlines()) - set(base.splitlines())
    changed_b = set(lock_b.splitlines()) - set(base.splitlines())
    assert changed_a and all(l.startswith("a ") for l in changed_a)
    assert changed_b and all(l.startswith("b ") for l in changed_b)

    git(d, "merge", "-q", "--no-edit", "edit-a")                # must not conflict
    merged = (d / "s2build.lock").read_text()
    assert changed_a | changed_b <= set(merged.splitlines())
    # the merged lock is exactly what `s2build lock` writes for the merged sources
    p = run(["ci", "--frozen"], d, check=0)
    assert "a: restored from cache" in p.stdout and "b: up to date" in p.stdout
    assert p.stdout.splitlines()[-2:] == ["s2build.lock: matches the sources", "0 passed, 0 failed"]
    p = run(["lock"], d, check=0)
    assert p.stdout.splitlines()[-1] == "s2build.lock: up to date (2 targets)"
    assert (d / "s2build.lock").read_text() == merged


def test_lock_one_target_keeps_the_others_and_a_damaged_lock_is_rewritten(tmp_path):
    d = tiny_project(tmp_path / "proj")
    run(["lock", "a"], d, check=0)
    text = (d / "s2build.lock").read_text()
    assert {l.split(" ")[0] for l in text.splitlines()[2:] if l and not l.startswith("[")} == {"a"}
    run(["lock", "b"], d, check=0)
    text = (d / "s2build.lock").read_text()
    assert {l.split(" ")[0] for l in text.splitlines()[2:] if l and not l.startswith("[")} == {"a", "b"}
    (d / "s2build.lock").write_text(text.replace("a mode release", "<<<<<<< HEAD"))
    p = run(["ci"], d, check=0)                     # not frozen: a warning, not a failure
    assert "s2build: warning: s2build.lock:" in p.stderr
    p = run(["ci", "--frozen"], d, check=8)
    assert p.stderr.startswith("s2build.lock:") and "merge conflict marker" in p.stderr
    p = run(["lock", "a"], d, check=0)
    assert "writing it again for every target" in p.stderr
    assert (d / "s2build.lock").read_text() == text


def test_adding_a_target_between_two_merges_with_rebuilding_the_next(tmp_path):
    """Branch add-b adds target b between a and c; branch edit-c rebuilds c (whose first fact,
    `artifact`, changes). v1 blocks started with that line and git conflicted; v2 headers keep
    an unchanged line between the two changes."""
    d = tiny_project(tmp_path / "proj", names=("a", "b", "c"))
    yaml_abc = (d / "s2build.yaml").read_text()
    (d / "s2build.yaml").write_text(yaml_abc.replace(TARGET.format(name="b"), ""))
    (d / ".gitignore").write_text(".s2build/\nbuild/\n")
    run(["lock"], d, check=0)
    git(d, "init", "-q")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "base: a and c")

    git(d, "checkout", "-q", "-b", "add-b")
    (d / "s2build.yaml").write_text(yaml_abc)
    run(["lock", "b"], d, check=0)
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "add b")

    git(d, "checkout", "-q", "main")
    git(d, "checkout", "-q", "-b", "edit-c")
    append_row(d / "data" / "c.csv", "0.9,0.9,1")
    before = (d / "s2build.lock").read_text()
    run(["lock", "c"], d, check=0)
    after = (d / "s2build.lock").read_text()
    assert "\n[c]\nc artifact " in after and after.split("c artifact ")[1][:64] != \
        before.split("c artifact ")[1][:64]                  # the first fact of c's block changed
    git(d, "commit", "-q", "-am", "c: one more row")

    git(d, "merge", "-q", "--no-edit", "add-b")                 # must not conflict
    merged = (d / "s2build.lock").read_text()
    assert [l for l in merged.splitlines() if l.startswith("[")] == ["[a]", "[b]", "[c]"]
    assert set(lockfile.parse_lock(merged)) == {"a", "b", "c"}
    p = run(["lock"], d, check=0)                 # what `lock` writes for the merged sources
    assert p.stdout.splitlines()[-1] == "s2build.lock: up to date (3 targets)"
    assert (d / "s2build.lock").read_text() == merged


def test_two_concurrent_lock_runs_keep_both_entries(tmp_path):
    import sys
    d = tiny_project(tmp_path / "proj")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "s2build", "lock", name], cwd=d, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    entries = lockfile.parse_lock((d / "s2build.lock").read_text())
    assert set(entries) == {"a", "b"}
    state = __import__("json").loads((d / ".s2build" / "state.json").read_text())
    assert {n: e["key"] for n, e in entries.items()} == \
        {n: state["targets"][n]["key"] for n in ("a", "b")}


def test_format_merges_an_insertion_beside_a_rebuild_in_git(tmp_path):
    """The format alone, through a real `git merge`: one branch inserts b between a and c, the
    other changes c's artifact (the first fact of its block). v1 conflicted here."""
    def entry(art):
        return dict(ENTRY, artifact=art * 64)

    def write(entries):
        (tmp_path / "s2build.lock").write_text(lockfile.format_lock(entries))

    write({"a": entry("1"), "c": entry("2")})
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "checkout", "-q", "-b", "add-b")
    write({"a": entry("1"), "b": entry("3"), "c": entry("2")})
    git(tmp_path, "commit", "-q", "-am", "add b")
    git(tmp_path, "checkout", "-q", "main")
    write({"a": entry("1"), "c": entry("4")})
    git(tmp_path, "commit", "-q", "-am", "rebuild c")
    git(tmp_path, "merge", "-q", "--no-edit", "add-b")          # must not conflict
    assert lockfile.parse_lock((tmp_path / "s2build.lock").read_text()) == \
        {"a": entry("1"), "b": entry("3"), "c": entry("4")}

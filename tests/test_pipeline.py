"""`s2build ci` and `s2build verify` through the real CLI: frozen locks in a real git
repository, reports (JUnit, JSON, Markdown with metric deltas), reproducibility proof, a
tampered artifact, a toolchain difference explained in words, and the exit codes."""

import json
import re

from junitparser import JUnitXml

from conftest import run, sha256
from test_lockfile import git, tiny_project


def test_frozen_ci_names_the_edited_file_then_passes_after_lock(wine):
    (wine / ".gitignore").write_text(".s2build/\nbuild/\nreports/\n")
    p = run(["lock"], wine, check=0)
    assert p.stdout == "wine: up to date\ns2build.lock: written (1 target)\n"
    git(wine, "init", "-q")
    git(wine, "add", "-A")
    git(wine, "commit", "-q", "-m", "release")
    locked = json.loads((wine / "build" / "wine.onnx.json").read_text())["metrics"]["accuracy"]

    data = wine / "data" / "wine-2.csv"
    lines = data.read_text().splitlines(keepends=True)
    lines[4] = lines[4].rstrip("\n")[:-1] + "1\n"                  # relabel one row
    data.write_text("".join(lines))
    p = run(["ci", "--frozen", "--markdown", "reports/ci.md", "--json", "reports/ci.json"],
            wine, check=8)
    assert p.stdout == ""
    assert p.stderr == ("s2build: error: s2build.lock does not match the sources: wine: file "
                        "changed: data/wine-2.csv (run `s2build lock` and commit s2build.lock)\n")
    md = (wine / "reports" / "ci.md").read_text()
    assert md.startswith("## s2build ci: failed\n")
    assert "- wine: file changed: data/wine-2.csv" in md
    doc = json.loads((wine / "reports" / "ci.json").read_text())
    assert doc["exit_code"] == 8 and doc["lock"]["status"] == "stale"

    p = run(["ci"], wine, check=0)                   # not frozen: builds, says the lock is stale
    assert p.stdout.startswith("wine: built in ")
    assert p.stdout.splitlines()[-2] == ("s2build.lock: does not match the sources (run "
                                         "`s2build lock` and commit it) (wine: file changed: "
                                         "data/wine-2.csv)")
    p = run(["lock"], wine, check=0)
    assert p.stdout == "wine: up to date\ns2build.lock: written (1 target)\n"
    diff = git(wine, "diff", "--", "s2build.lock")
    changed = sorted(l[1:].split(" ")[1] for l in diff.splitlines()
                     if l[:1] in "+-" and not l.startswith(("+++", "---")))
    assert set(changed) <= {"artifact", "key", "metric", "source"}
    assert "source" in changed and "artifact" in changed

    p = run(["ci", "--frozen", "--junit", "reports/specs.xml", "--json", "reports/ci.json",
             "--markdown", "reports/ci.md"], wine, check=0)
    assert p.stdout.splitlines()[0] == "wine: up to date"
    assert p.stdout.splitlines()[-2:] == ["s2build.lock: matches the sources",
                                          "5 passed, 0 failed"]
    xml = JUnitXml.fromfile(str(wine / "reports" / "specs.xml"))
    assert (xml.tests, xml.failures, xml.errors) == (5, 0, 0)
    doc = json.loads((wine / "reports" / "ci.json").read_text())
    assert doc["exit_code"] == 0 and doc["lock"]["status"] == "match"
    (t,) = doc["targets"]
    assert t["mode"] == "release" and t["artifact_sha256"] == sha256(wine / "build" / "wine.onnx")
    md = (wine / "reports" / "ci.md").read_text()
    acc = t["metrics"]["accuracy"]
    row = [l for l in md.splitlines() if l.startswith("| wine |")][0]
    assert row == (f"| wine | up to date | `{t['artifact_sha256'][:12]}` | accuracy {acc:.4g} "
                   f"(=) | 5 passed, 0 failed |")
    git(wine, "commit", "-q", "-am", "relabel")
    # against the first release's lock, the Markdown shows the change of the metric
    git(wine, "checkout", "-q", "HEAD~1", "--", "s2build.lock")
    run(["ci", "--markdown", "reports/ci.md"], wine, check=0)
    row = [l for l in (wine / "reports" / "ci.md").read_text().splitlines()
           if l.startswith("| wine |")][0]
    delta = float(f"{acc:.6g}") - float(f"{locked:.6g}")
    shown = "=" if abs(delta) < 5e-7 else f"{delta:+.4g}"
    assert f"| accuracy {acc:.4g} ({shown}) |" in row


def test_ci_exit_codes_spec_failure_missing_lock_config_error(tmp_path):
    d = tiny_project(tmp_path / "proj", names=("a",))
    p = run(["ci", "--frozen", "--markdown", "ci.md"], d, check=8)
    assert p.stderr == ("s2build: error: no s2build.lock; --frozen needs one (run `s2build lock` "
                        "and commit s2build.lock)\n")
    assert "**s2build.lock**: missing" in (d / "ci.md").read_text()
    y = d / "s2build.yaml"
    y.write_text(y.read_text() + "    specs:\n      - name: impossible\n"
                 "        gate: accuracy > 1\n")
    p = run(["ci", "--junit", "specs.xml"], d, check=7)
    assert p.stdout.splitlines()[-3:] == [
        "  s2build.yaml:11:15: " + p.stdout.split("s2build.yaml:11:15: ")[1].split("\n")[0],
        "s2build.lock: missing", "0 passed, 1 failed"]
    assert re.search(r"accuracy is [\d.]+, the gate requires accuracy > 1 \(\d+ holdout rows\)",
                     p.stdout)
    xml = JUnitXml.fromfile(str(d / "specs.xml"))
    assert (xml.tests, xml.failures) == (1, 1)
    y.write_text(y.read_text().replace("gate: accuracy > 1", "gate: accuracy > one"))
    p = run(["ci"], d, check=3)
    assert p.stderr.startswith("s2build.yaml:11:15: spec 'impossible': cannot read gate")


def test_verify_proves_the_example_and_catches_a_tampered_artifact(wine):
    run(["lock"], wine, check=0)
    locked = sha256(wine / "build" / "wine.onnx")
    p = run(["verify"], wine, check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == "wine: rebuilding from scratch in an empty cache (1 target)"
    assert re.fullmatch(r"wine: reproducible: a fresh release build in [\d.]+s gives "
                        + locked[:16] + r"\.\.\., as s2build\.lock records", lines[1])

    art = wine / "build" / "wine.onnx"
    blob = bytearray(art.read_bytes())
    blob[len(blob) // 2] ^= 0x01                                   # one flipped bit
    art.write_bytes(bytes(blob))
    p = run(["verify", "wine"], wine, check=9)
    assert p.stdout.splitlines()[1:] == [
        "wine: MISMATCH",
        f"  build/wine.onnx was modified after it was built: its SHA-256 is {sha256(art)}, but "
        f"s2build.lock and a fresh rebuild both give {locked} (run `s2build build wine` to "
        "restore it)"]
    assert p.stderr == "s2build: error: 1 of 1 target failed verification\n"
    assert not list(wine.glob("**/s2build-verify-*"))


def test_verify_explains_a_toolchain_difference_and_refuses_a_stale_lock(tmp_path):
    d = tiny_project(tmp_path / "proj", names=("a",))
    run(["lock"], d, check=0)
    lock = d / "s2build.lock"
    text = lock.read_text()
    real = re.search(r"^a artifact (\w+)$", text, re.M)[1]
    torch = re.search(r" torch=(\S+)", text)[1]
    lock.write_text(text.replace(real, "0" * 64).replace(f"torch={torch}", "torch=1.0.0")
                    .replace("threads=1", "threads=8"))
    p = run(["verify"], d, check=9)
    assert p.stdout.splitlines()[1:] == [
        "a: MISMATCH",
        f"  a fresh release build gives {real}, but s2build.lock records {'0' * 64}",
        f"  the toolchain differs from the one recorded: threads 8 -> 1; torch 1.0.0 -> {torch}. "
        "Another torch/onnx version, CPU class (kernels), machine or thread count changes float "
        "rounding and so the bytes; lock and verify on the platform you release from",
        "  build/a.onnx is the same as the fresh build, so s2build.lock was written from a "
        "different build"]
    lock.write_text(text)
    (d / "data" / "a.csv").write_text((d / "data" / "a.csv").read_text() + "0.5,0.5,1\n")
    p = run(["verify"], d, check=8)
    assert p.stderr == ("s2build: error: s2build.lock does not match the sources: a: file "
                        "changed: data/a.csv (run `s2build lock` first; verify proves the locked "
                        "artifacts)\n")

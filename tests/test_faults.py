"""The fault harness: a fault at every filesystem write point of a build, signals over a build's
duration, commands run concurrently on one project, sources edited or deleted mid-build.

Faults are injected by tests/faults/sitecustomize.py, put on the PYTHONPATH of the CLI
subprocess only (S2BUILD_FAULT=KIND:N: SIGKILL, SIGINT, SIGSTOP, or OSError ENOSPC / EROFS /
EACCES at the N-th write point; see its docstring). The builds are real: the toy project of
tests/toy.py, trained, exported and verified.

After every fault: the exit code is the fault's (SIGKILL -9, SIGINT 130, an errno 5 naming the
path and the errno's name; a write the build can do without, 0), never 70, no traceback; the
output is absent, the previous artifact or the reference one, never partial; every cache entry
is whole (its record and every file match their SHA-256); then a clean build exits 0, writes the
reference artifact byte for byte, and leaves no `.s2tmp-` file anywhere in the project.

The full sweeps are marked `faults` (`pytest -m faults`; pyproject's addopts deselect them from
a plain run); a plain run takes a sample of each, spread over its range.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run, sha256
from toy import make_project, relabel

SHIM = Path(__file__).resolve().parent / "faults"
ARTIFACT = "build/toy.onnx"
ERRNO_NAMES = {"enospc": "ENOSPC", "erofs": "EROFS", "eacces": "EACCES"}
# what an errno fault may hit without failing the build (the build does without that write):
# the clock probe, the graph cache (costs a later re-export), lock.owner (informational), and
# by operation: a makedirs whose folder exists, removing a file or folder
OPTIONAL = re.compile(r"/\.s2tmp-\d+-clock-|/\.s2build/graphs/|/lock\.owner$")
OPTIONAL_OPS = ("os.mkdir", "os.unlink", "os.remove", "os.rmdir")


# --- Running a build under the shim -------------------------------------------------------------

# in-process builds, with the project's own graph cache (the shared one of conftest would turn
# the export, and its write points, into a relink)
LOCAL = {"S2BUILD_NO_SERVER": "1", "S2BUILD_GRAPH_CACHE": "project"}


def shim_env(fault, log):
    path = os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "S2BUILD_FAULT": fault, "S2BUILD_FAULT_LOG": str(log),
            **LOCAL}


def write_points(log):
    """[(n, op, path)] the shim logged."""
    if not Path(log).exists():
        return []
    return [tuple(line.split(" ", 2)) for line in Path(log).read_text().splitlines()]


def start(args, project, fault=None, log=None, stderr=subprocess.PIPE):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **LOCAL)
    if fault:
        env.update(shim_env(fault, log))
    return subprocess.Popen([sys.executable, "-m", "s2build", *args], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=stderr, text=True,
                            stdin=subprocess.DEVNULL)


# --- What must hold after a fault ---------------------------------------------------------------

def leftovers(project):
    """Temp files anywhere in the project (atomic.TMP_PREFIX), and a non-empty .s2build/tmp."""
    found = [str(p.relative_to(project)) for p in Path(project).rglob(".s2tmp-*")]
    tmp = Path(project) / ".s2build" / "tmp"
    return sorted(found + ([f".s2build/tmp/{n}" for n in os.listdir(tmp)] if tmp.is_dir() else []))


def half_entries(project):
    """Cache entries that are not whole: a record that does not verify, a file that does not
    match its recorded SHA-256, a file the record does not name, or a folder with no record."""
    from s2build.store.local import Cache
    bad = []
    root = Path(project) / ".s2build" / "cache"
    for entry in sorted(root.glob("*/*")) if root.is_dir() else []:
        cache = Cache(str(Path(project) / ".s2build"))
        got = cache.get(entry.name) if entry.is_dir() else None
        if got is None:
            bad.append(f"{entry.name[:12]}: {cache.warnings or 'not an entry'}")
            continue
        names = {"model.onnx", "record.json", *(got[1].get("files") or {})}
        if set(os.listdir(entry)) != names or \
                any(cache.read_file(entry.name, n, got[1]) is None for n in names - {"record.json"}):
            bad.append(f"{entry.name[:12]}: {sorted(os.listdir(entry))} {cache.warnings}")
    return bad


def partial_files(project, allowed):
    """Problems with the output: bytes that are neither absent nor one of `allowed` SHA-256s,
    a sidecar or state.json that is not whole JSON."""
    out = []
    art = Path(project) / ARTIFACT
    if art.exists() and sha256(art) not in allowed:
        out.append(f"{ARTIFACT} is neither the previous nor the reference artifact")
    for p in (Path(project) / (ARTIFACT + ".json"), Path(project) / ".s2build" / "state.json"):
        if p.exists():
            try:
                json.loads(p.read_text())
            except ValueError:
                out.append(f"{p.relative_to(project)} is not whole JSON")
    return out


def check_after(project, p, expect_rc, allowed, ref_sha, what):
    """The assertions after a faulted command `p` (a CompletedProcess or Popen with its output
    read): returns [problem] (empty when all hold), recovering with a clean build."""
    problems = []
    rc, err = p.returncode, p.stderr
    if rc not in expect_rc:
        problems.append(f"exit {rc}, expected {sorted(expect_rc)}: {err.strip()[-400:]}")
    if "Traceback" in err or rc == 70:
        problems.append(f"internal error or traceback: {err.strip()[-400:]}")
    problems += partial_files(project, allowed)
    problems += half_entries(project)
    r = run(["build"], project, env=LOCAL)
    if r.returncode != 0:
        problems.append(f"the clean build after it exited {r.returncode}: {r.stderr.strip()[-400:]}")
    elif sha256(Path(project) / ARTIFACT) != ref_sha:
        problems.append("the clean build after it is not the reference artifact")
    problems += [f"left over after the clean build: {f}" for f in leftovers(project)]
    return [f"{what}: {x}" for x in problems]


def named_path(err, project, hit):
    """Whether the error line names a path in the project near the failed write `hit`."""
    m = re.search(r"^(\S+): cannot write: ", err, re.MULTILINE)
    if not m:
        return False
    named = os.path.normpath(os.path.join(project, m.group(1)))
    top = lambda p: Path(os.path.relpath(p, project)).parts[0]          # noqa: E731
    return top(named) == top(hit)


# --- The projects and their reference builds ----------------------------------------------------

@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """Two sweeps' starting points, each with its reference artifact and write points:
    cold: the toy, never built; edit: the toy built, then one data row relabelled. Each
    reference is a build under the shim in count mode (an uninterrupted release build: every
    clean build after a fault must give these bytes, so the shim is checked transparent)."""
    base = tmp_path_factory.mktemp("faults")
    out = {}
    cold = make_project(base / "cold")
    built = shutil.copytree(cold, base / "built")
    clock = time.perf_counter()
    run(["build"], built, check=0, env=shim_env("count:0", base / "cold.log"))
    out["seconds"] = time.perf_counter() - clock
    edit = shutil.copytree(built, base / "edit")
    relabel(edit / "data" / "a.csv", 3)
    done = shutil.copytree(edit, base / "edit-built")
    run(["build"], done, check=0, env=shim_env("count:0", base / "edit.log"))
    out["cold"] = dict(project=cold, sha=sha256(built / ARTIFACT), prev=None, root=built,
                       points=write_points(base / "cold.log"))
    out["edit"] = dict(project=edit, sha=sha256(done / ARTIFACT), prev=out["cold"]["sha"],
                       root=done, points=write_points(base / "edit.log"))
    out["timings"] = json.loads((built / (ARTIFACT + ".json")).read_text())["timings"]
    return out


def fault_at(ref, sweep, kind, n, tmp_path, under=None):
    """Run the build of `sweep` with fault KIND at write point `n`, or (`under`, a folder
    relative to the project) at every write point under that folder, as a read-only mount or
    a folder without permission gives; [problem]."""
    s = ref[sweep]
    name = f"{sweep}-{kind}-{n if under is None else under.replace('/', '_')}"
    d = shutil.copytree(s["project"], tmp_path / name)
    log = tmp_path / f"{name}.log"
    env = shim_env(f"{kind}:{n}" if under is None else f"{kind}:1+", log)
    if under is not None:
        env["S2BUILD_FAULT_UNDER"] = str(d / under)
    p = run(["build"], d, env=env)
    seen = write_points(log)
    hits = [h for h in seen if h[0] == str(n)] if under is None else seen
    if kind == "enospc":                          # unlink and rmdir free space: not faulted
        hits = [h for h in hits if h[1] not in ("os.unlink", "os.remove", "os.rmdir")]
    rel = lambda path: os.path.relpath(path, d) if path.startswith("/") else path  # noqa: E731
    what = f"{sweep} build, {kind} " + (f"at write point {n}" if under is None else
                                        f"at every write under {under}/") + \
        (f" ({hits[0][1]} {rel(hits[0][2])})" if hits else " (not reached)")
    if not hits:
        expect = {0}
    elif kind == "kill":
        expect = {-signal.SIGKILL}
    elif kind == "sigint":
        expect = {130}
    else:
        optional = all(OPTIONAL.search(path) or op in OPTIONAL_OPS or os.path.isdir(path)
                       for _n, op, path in hits)     # os.open of a folder: an fsync of it
        expect = {5, 0} if optional else {5}
    problems = []
    if p.returncode == 0 and sha256(d / ARTIFACT) != s["sha"]:
        problems.append(f"{what}: exit 0 but {ARTIFACT} is not the reference artifact")
    if hits and kind in ERRNO_NAMES and p.returncode == 5:
        if f"({ERRNO_NAMES[kind]})" not in p.stderr or \
                not any(named_path(p.stderr, d, path) for _n, _op, path in hits):
            problems.append(f"{what}: the error names no path or errno: {p.stderr.strip()[-300:]}")
    allowed = {s["sha"], s["prev"]} - {None}
    return problems + check_after(d, p, expect, allowed, s["sha"], what)


def folders(ref, sweep):
    """The folders the build of `sweep` writes in, relative to the project ("." for its own
    folder), a temp folder's writes counted in the folder that holds it."""
    root, out = ref[sweep]["root"], set()
    for _n, _op, path in ref[sweep]["points"]:
        parts = Path(os.path.relpath(path, root)).parts
        cut = next((i for i, x in enumerate(parts) if x.startswith(".s2tmp-")), len(parts) - 1)
        out.add(str(Path(*parts[:cut])) if cut else ".")
    return sorted(out)


def spread(n_points, k, offset):
    """`k` write points of 1..n_points, evenly spread, shifted by `offset` (0..1)."""
    return sorted({1 + min(n_points - 1, int(n_points * (i + offset) / k)) for i in range(k)})


# The full sweeps. kill, enospc: every write point of both builds; sigint: every write point of
# the edit build; erofs, eacces: a property of a folder (a read-only mount, a mode without w),
# so every write under each folder the build writes in fails, folder by folder.
SWEEPS = [("cold", "kill"), ("edit", "kill"), ("cold", "enospc"), ("edit", "enospc"),
          ("edit", "sigint")]
FOLDER_SWEEPS = [(sweep, kind) for sweep in ("cold", "edit") for kind in ("erofs", "eacces")]
# the plain run's sample: 2 points each of kill and enospc on the cold build, 1 on the edit
# build, 1 of sigint; EROFS on the shard folders (EACCES: test_a_real_folder_...). The offsets put the samples of
# different kinds on different parts of the range.
SAMPLE = {"kill": 0.45, "enospc": 0.7, "sigint": 0.6}
SAMPLE_FOLDERS = {("cold", "erofs"): ".s2build/shards"}


@pytest.mark.parametrize("sweep,kind", SWEEPS)
def test_write_point_sample(ref, tmp_path, sweep, kind):
    points = ref[sweep]["points"]
    problems = []
    for n in spread(len(points), 1, SAMPLE[kind]):
        problems += fault_at(ref, sweep, kind, n, tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("sweep,kind", sorted(SAMPLE_FOLDERS))
def test_folder_fault_sample(ref, tmp_path, sweep, kind):
    problems = fault_at(ref, sweep, kind, 1, tmp_path, under=SAMPLE_FOLDERS[sweep, kind])
    assert not problems, "\n".join(problems)


@pytest.mark.faults
@pytest.mark.parametrize("sweep,kind", FOLDER_SWEEPS)
def test_folder_fault_sweep(ref, tmp_path, sweep, kind):
    problems = []
    for folder in folders(ref, sweep):
        problems += fault_at(ref, sweep, kind, 1, tmp_path, under=folder)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


@pytest.mark.faults
@pytest.mark.parametrize("sweep,kind", SWEEPS)
def test_write_point_sweep(ref, tmp_path, sweep, kind):
    """Every write point of the build: all problems found are listed at once."""
    problems = []
    for n in range(1, len(ref[sweep]["points"]) + 1):
        problems += fault_at(ref, sweep, kind, n, tmp_path)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


# --- Real permissions, a read-only output mount, and the shim's coverage ------------------------

def _drop_root():
    """argv prefix that runs a command as this root user without CAP_DAC_OVERRIDE (so file
    modes bind it as they bind anyone); [] when not root; None when that is not possible."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        return None
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", "--"]


@pytest.mark.parametrize("folder,named", [
    ("build", ARTIFACT),
    pytest.param(".s2build/cache", ".s2build/cache", marks=pytest.mark.faults)])
def test_a_real_folder_without_write_permission(ref, tmp_path, folder, named):
    """chmod 0o555 (no shim): exit 5 naming the path and EACCES; nothing changed; after chmod
    back, the build gives the reference artifact."""
    prefix = _drop_root()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions do not bind")
    d = shutil.copytree(ref["edit"]["project"], tmp_path / "p")
    before = sha256(d / ARTIFACT)
    (d / folder).chmod(0o555)
    try:
        p = subprocess.run([*prefix, sys.executable, "-m", "s2build", "build"], cwd=d, text=True,
                           capture_output=True, env=dict(os.environ, **LOCAL),
                           timeout=300)
    finally:
        (d / folder).chmod(0o755)
    assert p.returncode == 5, p.stderr
    assert "(EACCES)" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert re.search(rf"^{re.escape(named)}\S*: cannot write: Permission denied", p.stderr,
                     re.MULTILINE), p.stderr
    assert sha256(d / ARTIFACT) == before and not half_entries(d)
    run(["build"], d, check=0)
    assert sha256(d / ARTIFACT) == ref["edit"]["sha"] and not leftovers(d)


def test_a_read_only_output_mount(ref, tmp_path):
    """Every write under build/ fails with EROFS (the shim, as a read-only mount there)."""
    d = shutil.copytree(ref["edit"]["project"], tmp_path / "p")
    env = dict(shim_env("erofs:1+", tmp_path / "log"), S2BUILD_FAULT_UNDER=str(d / "build"))
    p = run(["build"], d, env=env)
    assert p.returncode == 5 and "Traceback" not in p.stderr, p.stderr
    assert f"{ARTIFACT}: cannot write: Read-only file system (injected) (EROFS)" in p.stderr
    problems = check_after(d, p, {5}, {ref["edit"]["prev"]}, ref["edit"]["sha"], "EROFS mount")
    assert not problems, "\n".join(problems)


_WRITES = re.compile(r'^\d+\s+(openat|open|creat|rename|renameat2?|mkdir|mkdirat|unlink|unlinkat|'
                     r'rmdir|link|linkat|symlink|truncate)\((?:AT_FDCWD, )?"([^"]+)"(.*)$')


@pytest.mark.faults
@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
def test_the_shim_sees_every_write_in_the_project(ref, tmp_path):
    """strace -f of a cold build: every system call that writes under the project (open for
    writing, create, rename, mkdir, unlink, rmdir) was a write point the shim counted, so no
    write (torch.save, onnx, numpy, pyarrow, C code) escapes the sweeps."""
    d = shutil.copytree(ref["cold"]["project"], tmp_path / "p")
    env = dict(os.environ, **shim_env("count:0", tmp_path / "log"))
    subprocess.run(["strace", "-f", "-qq", "-o", str(tmp_path / "trace"), "-e",
                    "trace=openat,open,creat,rename,renameat,renameat2,mkdir,mkdirat,unlink,"
                    "unlinkat,rmdir,link,linkat,symlink,truncate", sys.executable, "-m",
                    "s2build", "build"], cwd=d, env=env, check=True, capture_output=True)
    counted = {path for _n, _op, path in write_points(tmp_path / "log")}
    missed = []
    for line in (tmp_path / "trace").read_text().splitlines():
        m = _WRITES.match(line)
        if not m or not m.group(2).startswith(str(d) + "/") and m.group(2) != str(d):
            continue
        call, path, rest = m.groups()
        if call in ("openat", "open") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", rest):
            continue
        if path not in counted:
            missed.append(f"{call} {path}")
    assert not missed, missed
    assert len(counted) > 20


# --- Signals over a build's duration ------------------------------------------------------------

PHASES = ["startup", "data", "import", "train", "export", "verify", "store"]


def phase_moments(ref):
    """{phase: seconds after the start} in the middle of each phase of the reference build
    (from its sidecar's timings; startup = python, s2build's import, plan and lock)."""
    t, total = ref["timings"], ref["seconds"]
    work = ["data", "import", "train", "export", "verify"]
    startup = max(0.2, total - sum(t[k] for k in work) - 0.2)
    at, clock = {"startup": startup / 2}, startup
    for k in work:
        at[k] = clock + t[k] / 2
        clock += t[k]
    at["store"] = clock + 0.02
    return at


def signal_at(ref, tmp_path, sig, phase):
    d = shutil.copytree(ref["cold"]["project"], tmp_path / f"{sig.name}-{phase}")
    p = start(["build"], d)
    time.sleep(phase_moments(ref)[phase])
    p.send_signal(sig)
    _out, err = p.communicate(timeout=120)
    done = types_ns(returncode=p.returncode, stderr=err)
    expect = {0, -signal.SIGKILL if sig == signal.SIGKILL else 130}
    return check_after(d, done, expect, {ref["cold"]["sha"]}, ref["cold"]["sha"],
                       f"{sig.name} during {phase}")


def types_ns(**kw):
    import types
    return types.SimpleNamespace(**kw)


@pytest.mark.parametrize("sig,phase", [(signal.SIGINT, "train"), (signal.SIGKILL, "export")])
def test_signal_sample(ref, tmp_path, sig, phase):
    problems = signal_at(ref, tmp_path, sig, phase)
    assert not problems, "\n".join(problems)


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_signal_sweep(ref, tmp_path, sig):
    problems = []
    for phase in PHASES:
        problems += signal_at(ref, tmp_path, sig, phase)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


# --- Commands run concurrently on one project ---------------------------------------------------

# documented exit codes each command may end with when another one changes the project under it
CONCURRENT_OK = {"build": {0}, "status": {0, 1}, "test": {0}, "clean": {0}}


def concurrent_round(ref, tmp_path, name, clean_after):
    """Two builds, `status` and `test` at once on the edited toy, and `clean --cache`
    `clean_after` seconds later; [problem]."""
    d = shutil.copytree(ref["edit"]["project"], tmp_path / name)
    procs = [("build", start(["build"], d)), ("build", start(["build"], d)),
             ("status", start(["status"], d)), ("test", start(["test"], d))]
    time.sleep(clean_after)
    procs.append(("clean", start(["clean", "--cache"], d)))
    problems = []
    for cmd, p in procs:
        _out, err = p.communicate(timeout=300)
        if p.returncode not in CONCURRENT_OK[cmd] or "Traceback" in err:
            problems.append(f"{name}: {cmd} exited {p.returncode}: {err.strip()[-400:]}")
    problems += half_entries(d)
    r = run(["build"], d)
    if r.returncode != 0 or sha256(d / ARTIFACT) != ref["edit"]["sha"]:
        problems.append(f"{name}: the build after exited {r.returncode}, or a wrong artifact")
    problems += [f"{name}: left over: {f}" for f in leftovers(d)]
    return problems


def test_concurrent_commands_sample(ref, tmp_path):
    problems = concurrent_round(ref, tmp_path, "clean at 2.5 s", 2.5)
    assert not problems, "\n".join(problems)


@pytest.mark.faults
def test_concurrent_commands_sweep(ref, tmp_path):
    problems = []
    for delay in (0.0, 0.5, 1.5, 2.5, 4.0, 6.0):
        problems += concurrent_round(ref, tmp_path, f"clean at {delay} s", delay)
    assert not problems, "\n".join(problems)


# --- Sources edited or deleted mid-build --------------------------------------------------------

def _stopped(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


# where the build is stopped (the first write point matching): while reading the data, after
# training and export (the graph cache), after verification and the second fingerprint (the
# cache entry), and while installing the output
MOMENTS = {"data": r"/\.s2build/shards/", "export": r"/\.s2build/graphs/",
           "store": r"/\.s2build/tmp/", "install": r"/build/"}


def edit_mid_build(ref, tmp_path, moment, change):
    """Stop the cold build at `moment` (SIGSTOP from the shim), `change` data/a.csv ("edit" a
    row or "delete" the file), continue; then put the file back and build again."""
    s = ref["cold"]
    n = next(int(n) for n, op, path in s["points"] if re.search(MOMENTS[moment], path))
    d = shutil.copytree(s["project"], tmp_path / f"{change}-{moment}")
    src = d / "data" / "a.csv"
    original = src.read_bytes()
    p = start(["build"], d, fault=f"stop:{n}", log=tmp_path / f"{change}-{moment}.log")
    deadline = time.time() + 120
    while not _stopped(p.pid):
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.02)
    relabel(src, 3) if change == "edit" else src.unlink()
    p.send_signal(signal.SIGCONT)
    _out, err = p.communicate(timeout=300)
    what = f"{change} data/a.csv during {moment}"
    problems = []
    # an edit: the build goes on (the artifact is of the bytes it read, and says it is stale
    # now) or starts over; a deletion: a clear error (exit 3 or 4), or a build of what was read
    expect = {0} if change == "edit" else {0, 3, 4}
    if p.returncode not in expect or "Traceback" in err or "internal error" in err:
        problems.append(f"{what}: exit {p.returncode}: {err.strip()[-400:]}")
    if p.returncode == 0 and change == "edit" and sha256(d / ARTIFACT) == s["sha"] \
            and "stale" not in err + _out:
        if moment in ("store", "install"):       # after the second fingerprint: the build
            st = run(["status"], d, env=LOCAL)   # cannot know; the next
            if st.returncode != 1:                                     # status must
                problems.append(f"{what}: status exits {st.returncode}, not 1 (stale)")
        else:
            problems.append(f"{what}: built the old bytes without saying the source changed")
    src.write_bytes(original)
    return problems + check_after(d, types_ns(returncode=0, stderr=""), {0},
                                  {s["sha"], ref["edit"]["sha"]}, s["sha"], what)


@pytest.mark.parametrize("moment,change", [("export", "delete"), ("data", "edit")])
def test_source_changes_mid_build_sample(ref, tmp_path, moment, change):
    problems = edit_mid_build(ref, tmp_path, moment, change)
    assert not problems, "\n".join(problems)


@pytest.mark.faults
def test_source_changes_mid_build_sweep(ref, tmp_path):
    problems = []
    for moment in MOMENTS:
        for change in ("edit", "delete"):
            problems += edit_mid_build(ref, tmp_path, moment, change)
    assert not problems, "\n".join(problems)

"""Release pipelines: `s2build test`, `lock`, `ci` and `verify`, and their reports.

    test [TARGET...]     build what is stale, run the specs, print one line per spec and a last
                         line `N passed, N failed`; `--junit FILE` (JUnit XML), `--json`
    lock [TARGET...]     release-build, then write s2build.lock (see lockfile.py)
    ci [--frozen]        release builds (never a dev artifact), specs, the lock check and
                         reports: `--junit F`, `--json F`, `--markdown F` (metric deltas against
                         the lock, fit for a pull-request comment). `--frozen` fails (exit 8)
                         before building when the sources no longer match the lock.
    verify [TARGET...]   rebuild from scratch into an empty scratch project (a temporary folder
                         holding copies of the yaml, sources and user code; a separate process)
                         and compare the artifact's SHA-256 with s2build.lock; explain any
                         difference in words (toolchain, platform, threads); exit 9.

Exit codes: 7 a spec failed, 8 the lock is missing or stale (`--frozen`, `verify`), 9 `verify`
found a different artifact; build and config errors keep their own codes (errors.py).

JUnit XML layout (one suite per target, one case per spec):

    <testsuites name="s2build" tests= failures= errors= time=>
      <testsuite name="wine" tests= failures= errors= skipped="0" time=>
        <testcase classname="s2build.wine" name="holdout accuracy" file="s2build.yaml"
                  line="33" time=>
          <failure type="gate" message="...">s2build.yaml:33:11: ...</failure>   (or <error>)
"""

import json
import os
import sys
import time

from s2build import errors
from s2build.release import lockfile
from s2build.engine import runner
from s2build.errors import BuildError, LockStaleError, MismatchError
from s2build.report.console import Collect

SUMMARY = "{passed} passed, {failed} failed"


# --- Building ------------------------------------------------------------------------------

class Tee:
    """Pass reporter calls to `inner` and keep the results."""

    def __init__(self, inner):
        self.inner, self.results = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def done(self, r):
        self.results.append(r)
        self.inner.done(r)


def _result_dict(r):
    if hasattr(r, "as_dict"):
        return r.as_dict()
    return {"name": r.name, "outcome": r.outcome, "key": getattr(r, "key", ""),
            "metrics": getattr(r, "metrics", {}), "seconds": getattr(r, "seconds", 0.0)}


def release_build(project, names, reporter, command):
    """Build `names` as release builds (from scratch, seeded, one thread) and check that every
    artifact recorded for them is a release artifact. Returns (results, steps by name, state)."""
    results = runner.build(project, names, reporter, command=command, mode="release")
    steps, state = runner.status(project, names)
    for s in steps:
        rec = state.targets.get(s.target.name) or {}
        if rec.get("mode", "release") != "release":
            raise BuildError(f"{s.target.config['output']} is a {rec.get('mode')} build; "
                             f"{command} needs release artifacts",
                             hint=f"run: s2build build --release {s.target.name}")
    return results, {s.target.name: s for s in steps}, state


def _wanted(project, names):
    return list(names) if names else list(project.targets)


# --- Specs ---------------------------------------------------------------------------------

def run_all_specs(project, names, steps, out=None):
    """Run the specs of `names` (default all targets) on their current artifacts, printing one
    line per spec to `out` (None: silent). Returns [specs.run.Outcome]."""
    from s2build.compile.artifact import Artifact
    from s2build.specs import parse as specparse
    from s2build.specs import run as specrun
    outcomes = []
    for name in _wanted(project, names):
        specparse.files(project.targets[name])          # missing spec files: ConfigError
        target, step = project.targets[name], steps[name]
        parsed = specparse.parse(target)
        if not parsed:
            continue
        if step.action != "up-to-date":
            raise BuildError(f"{name}: the artifact is stale again ({step.reasons[0].text}); "
                             "specs would test an old build", hint="run the command again")
        art = Artifact(target.output)
        if art.build_key != step.inputs.key:
            raise BuildError(f"{target.config['output']} is not the artifact of the current "
                             "build key", hint=f"run: s2build build {name}")
        spec_runner = specrun.Runner(target, step.inputs, project.state_dir, artifact=art)
        for s in parsed:
            o = spec_runner.run(s)
            outcomes.append(o)
            if out is not None:
                print_outcome(o, out)
    return outcomes


def print_outcome(o, out):
    if o.passed:
        print(f"{o.spec.id} PASSED: {o.message}", file=out)
    else:
        print(f"{o.spec.id} FAILED", file=out)
        print(f"  {o.spec.loc}: {o.message}", file=out)
    out.flush()


def counts(outcomes):
    passed = sum(1 for o in outcomes if o.passed)
    return passed, len(outcomes) - passed


def summary(outcomes):
    passed, failed = counts(outcomes)
    return SUMMARY.format(passed=passed, failed=failed)


# --- Reports -------------------------------------------------------------------------------

def junit_xml(outcomes, project_targets):
    """JUnit XML text: one <testsuite> per target that has specs, one <testcase> per spec."""
    import xml.etree.ElementTree as ET
    suites = ET.Element("testsuites", name="s2build")
    by_target = {}
    for o in outcomes:
        by_target.setdefault(o.spec.target, []).append(o)
    tot = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for name in [n for n in project_targets if n in by_target]:
        items = by_target[name]
        fails = sum(1 for o in items if not o.passed and not o.error)
        errs = sum(1 for o in items if o.error)
        t = sum(o.seconds for o in items)
        suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(items)),
                              failures=str(fails), errors=str(errs), skipped="0",
                              time=f"{t:.3f}")
        for o in items:
            loc = (o.spec.loc or "").split(":")
            attrs = {"classname": f"s2build.{name}", "name": o.spec.name, "time": f"{o.seconds:.3f}"}
            if len(loc) >= 2 and loc[1].isdigit():
                attrs.update(file=loc[0], line=loc[1])
            case = ET.SubElement(suite, "testcase", **attrs)
            if not o.passed:
                el = ET.SubElement(case, "error" if o.error else "failure",
                                   type=o.spec.kind, message=o.message)
                el.text = f"{o.spec.loc}: {o.message}"
        tot["tests"] += len(items)
        tot["failures"] += fails
        tot["errors"] += errs
        tot["time"] += t
    for k in ("tests", "failures", "errors"):
        suites.set(k, str(tot[k]))
    suites.set("time", f"{tot['time']:.3f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _write(path, text):
    from s2build import atomic
    atomic.write_text(path, text)


def _fmt(v):
    return f"{float(v):.4g}"


def _delta(cur, old):
    if old is None:
        return "new"
    d = float(f"{float(cur):.6g}") - float(old)
    return "=" if abs(d) < 5e-7 else f"{d:+.4g}"


def markdown(doc):
    """A Markdown summary of a ci run (`doc` is the ci JSON document)."""
    ok = doc["exit_code"] == 0
    lines = [f"## s2build ci: {'passed' if ok else 'failed'}", ""]
    if doc.get("error"):
        lines += [f"**Error** (exit {doc['exit_code']}):", "", f"> {doc['error']}", ""]
    if doc["targets"]:
        lines += ["| target | build | artifact | metrics (change vs s2build.lock) | specs |",
                  "|---|---|---|---|---|"]
        for t in doc["targets"]:
            mets = ", ".join(f"{k} {_fmt(v)} ({_delta(v, t['lock_metrics'].get(k))})"
                             for k, v in t["metrics"].items()) or "-"
            sp = t["specs"]
            spec_text = f"{sp['passed']} passed, {sp['failed']} failed" if sp["total"] else "none"
            art = f"`{t['artifact_sha256'][:12]}`" if t.get("artifact_sha256") else "-"
            if t.get("lock_artifact") and t.get("artifact_sha256") \
                    and t["lock_artifact"] != t["artifact_sha256"]:
                art += f" (lock: `{t['lock_artifact'][:12]}`)"
            lines.append(f"| {t['name']} | {t['outcome'].replace('-', ' ')} | {art} | {mets} | "
                         f"{spec_text} |")
        lines.append("")
    failed = [s for s in doc["specs"] if not s["passed"]]
    if failed:
        lines += ["### Failed specs", ""]
        lines += [f"- `{s['target']}::{s['name']}` at `{s['location']}`: {s['message']}"
                  for s in failed]
        lines.append("")
    lock = doc["lock"]
    lines.append(f"**s2build.lock**: {lock['text']}")
    for d in lock.get("differences", []):
        lines.append(f"- {d}")
    lines += ["", f"{doc['passed']} passed, {doc['failed']} failed", ""]
    return "\n".join(lines)


# --- Lock facts ----------------------------------------------------------------------------

def _spec_files(target, inputs):
    """{relpath: sha256} of the files the specs read that are not sources already."""
    from s2build.engine import fingerprint
    from s2build.specs import parse as specmod
    if not target.config.get("specs"):
        return {}
    return {rel: fingerprint.sha256_file(os.path.join(target.root, rel))
            for rel in specmod.files(target) if rel not in inputs.sources
            and rel not in inputs.holdout}


def current_sources(step):
    """The source-side facts of a target now (the parts of a lock entry that --frozen checks)."""
    from s2build.engine.fingerprint import canonical_digest
    i = step.inputs
    return {"source": dict(i.sources), "holdout": dict(i.holdout), "code": dict(i.user_code),
            "specdata": _spec_files(step.target, i), "config": canonical_digest(i.config),
            "dep": dict(i.deps)}


def lock_differences(project, lock, steps, names):
    """['wine: file changed: data/wine-2.csv', ...]: how the sources differ from the lock."""
    if lock is None:
        return ["no s2build.lock"]
    out = []
    for s in steps:
        name = s.target.name
        if name not in lock:
            out.append(f"{name}: not in s2build.lock")
            continue
        out += [f"{name}: {d}" for d in lockfile.source_differences(lock[name],
                                                                       current_sources(s))]
    if not names:
        out += [f"{n}: in s2build.lock but not in {os.path.basename(project.path)}"
                for n in sorted(set(lock) - set(project.targets))]
    return out


# --- Commands ------------------------------------------------------------------------------

def check_spec_files(project, names):
    """Before building: a spec naming a missing file is a config error (exit 3)."""
    from s2build.specs import parse as specmod
    for name in _wanted(project, names):
        if project.targets[name].config.get("specs"):
            specmod.files(project.targets[name])


def test(project, names, reporter, junit=None, as_json=False):
    """`s2build test`. Returns the exit code."""
    check_spec_files(project, names)
    rep = Collect() if as_json else reporter
    try:
        results = runner.build(project, names, rep, command="test")
    finally:
        rep.finish()
    steps, _state = runner.status(project, names)
    steps = {s.target.name: s for s in steps}
    outcomes = run_all_specs(project, names, steps, out=None if as_json else sys.stdout)
    passed, failed = counts(outcomes)
    if junit:
        _write(junit, junit_xml(outcomes, list(project.targets)))
    if as_json:
        json.dump({"targets": [_result_dict(r) for r in results], "warnings": rep.warnings,
                   "specs": [o.as_dict() for o in outcomes], "passed": passed,
                   "failed": failed}, sys.stdout, indent=2)
        print()
    else:
        if not outcomes:
            print("s2build: warning: no specs to run (add `specs:` to a target)", file=sys.stderr)
        print(summary(outcomes))
    return errors.SPEC if failed else errors.OK


def lock(project, names, reporter):
    """`s2build lock`: release-build `names` (default all), then write s2build.lock. The lock
    file is read, merged and written under the build lock (.s2build/lock), so two concurrent
    runs locking different targets both keep their entries."""
    from s2build.engine.locking import BuildLock
    try:
        lockfile.read(project)
    except LockStaleError as e:
        print(f"s2build: warning: {e}; writing it again for every target", file=sys.stderr)
        names = []
    check_spec_files(project, names)
    try:
        _results, steps, state = release_build(project, names, reporter, "lock")
    finally:
        reporter.finish()
    ours = {}
    for name, s in steps.items():
        rec = state.targets.get(name)
        if not rec or rec.get("key") != s.inputs.key:
            raise BuildError(f"{name}: no build recorded for the current sources",
                             hint=f"run: s2build build {name}")
        ours[name] = lockfile.entry(rec, s.inputs, _spec_files(s.target, s.inputs))
    with BuildLock(project.state_dir, "s2build lock", wait=True, on_wait=reporter.warn):
        try:
            old = lockfile.read(project) or {}
        except LockStaleError:
            old = {}
        entries = {n: e for n, e in old.items() if n in project.targets} if names else {}
        entries.update(ours)
        changed = lockfile.write(project, entries)
    n = len(entries)
    print(f"{lockfile.LOCK_NAME}: {'written' if changed else 'up to date'} "
          f"({n} target{'s' if n != 1 else ''})")
    return errors.OK


def ci(project, names, reporter, frozen=False, junit=None, json_path=None, md_path=None):
    """`s2build ci`. Returns the exit code; S2Errors propagate after the reports are written."""
    doc = {"exit_code": errors.OK, "error": None, "frozen": frozen, "targets": [], "specs": [],
           "passed": 0, "failed": 0, "lock": {"status": "unknown", "text": "not checked"},
           "warnings": []}
    outcomes = []
    try:
        try:
            lock = lockfile.read(project)
        except LockStaleError as e:
            if frozen:
                raise
            doc["warnings"].append(str(e))
            lock = None
        check_spec_files(project, names)
        steps, _state = runner.status(project, names)
        diffs = lock_differences(project, lock, steps, names)
        if diffs:
            doc["lock"] = {"status": "missing" if lock is None else "stale",
                           "text": "missing" if lock is None else
                           "does not match the sources (run `s2build lock` and commit it)",
                           "differences": [] if lock is None else diffs}
            if frozen:
                if lock is None:
                    raise LockStaleError("no s2build.lock; --frozen needs one",
                                         hint="run `s2build lock` and commit s2build.lock")
                raise LockStaleError("s2build.lock does not match the sources: "
                                     + "; ".join(diffs),
                                     hint="run `s2build lock` and commit s2build.lock")
        else:
            doc["lock"] = {"status": "match", "text": "matches the sources"}
        tee = Tee(reporter)
        try:
            _results, steps, state = release_build(project, names, tee, "ci")
        finally:
            reporter.finish()
        outcomes = run_all_specs(project, names, steps, out=sys.stdout)
        for r in tee.results:
            name = r.name
            rec = state.targets.get(name) or {}
            locked = (lock or {}).get(name) or {}
            mine = [o for o in outcomes if o.spec.target == name]
            p, f = counts(mine)
            doc["targets"].append({
                "name": name, "outcome": r.outcome, "key": steps[name].inputs.key,
                "artifact_sha256": rec.get("artifact_sha256"), "mode": rec.get("mode"),
                "metrics": rec.get("metrics") or {},
                "lock_artifact": locked.get("artifact"), "lock_metrics": locked.get("metrics", {}),
                "specs": {"total": len(mine), "passed": p, "failed": f}})
            if lock is not None and not diffs and locked.get("artifact") \
                    and locked["artifact"] != rec.get("artifact_sha256"):
                tc = lockfile.toolchain_differences(locked.get("toolchain", {}),
                                                    steps[name].inputs.toolchain)
                why = ("toolchain differs: " + ", ".join(tc)) if tc else \
                    "same sources and toolchain: run `s2build verify` to check reproducibility"
                doc["warnings"].append(f"{name}: artifact differs from s2build.lock ({why})")
        doc["specs"] = [o.as_dict() for o in outcomes]
        doc["passed"], doc["failed"] = counts(outcomes)
        for w in doc["warnings"]:
            print(f"s2build: warning: {w}", file=sys.stderr)
        lock_line = f"{lockfile.LOCK_NAME}: {doc['lock']['text']}"
        if doc["lock"].get("differences"):
            lock_line += " (" + "; ".join(doc["lock"]["differences"]) + ")"
        print(lock_line)
        print(summary(outcomes))
        doc["exit_code"] = errors.SPEC if doc["failed"] else errors.OK
        return doc["exit_code"]
    except errors.S2Error as e:
        doc["exit_code"], doc["error"] = e.exit_code, str(e)
        raise
    finally:
        if not doc["specs"] and outcomes:
            doc["specs"] = [o.as_dict() for o in outcomes]
        if junit:
            _write(junit, junit_xml(outcomes, list(project.targets)))
        if json_path:
            _write(json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if md_path:
            _write(md_path, markdown(doc))


# --- verify --------------------------------------------------------------------------------

def _onnx_meta(path):
    """metadata_props of an ONNX file as a dict, or None when it cannot be read."""
    from s2build.compile.artifact import metadata
    return metadata(path)


def _sha(path):
    from s2build.engine.fingerprint import sha256_file
    try:
        return sha256_file(path)
    except OSError:
        return None


def _scratch_copy(project, steps, scratch):
    """Copy the yaml and every input file of `steps` into `scratch`; returns the yaml's copy.
    Paths that climb out of the project ('../x') keep their shape under a deeper root."""
    import shutil
    rels = set()
    for s in steps:
        i = s.inputs
        rels.update(i.sources, i.holdout, i.user_code)
        if s.target.config.get("specs"):
            from s2build.specs import parse as specmod
            rels.update(specmod.files(s.target))
    depth = max([len(p.split(os.sep)) for p in rels
                 if os.path.normpath(p).startswith(os.pardir)] or [0])
    root = os.path.join(scratch, *(["p"] * depth), "project")
    os.makedirs(root)
    for rel in sorted(rels):
        dest = os.path.normpath(os.path.join(root, rel))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(project.root, rel), dest)
    yaml_copy = os.path.join(root, os.path.basename(project.path))
    shutil.copy2(project.path, yaml_copy)
    return yaml_copy


def explain_mismatch(name, expected_toolchain, current_toolchain, old_meta, new_meta):
    """Where a differing artifact may come from, in words (one string per finding)."""
    out = []
    tc = lockfile.toolchain_differences(expected_toolchain or {}, current_toolchain or {})
    if tc:
        out.append("the toolchain differs from the one recorded: " + "; ".join(tc) + ". "
                   "Another torch/onnx version, CPU class (kernels), machine or thread count "
                   "changes float rounding and so the bytes; lock and verify on the platform "
                   "you release from")
    if old_meta and new_meta:
        keys = sorted(k for k in set(old_meta) | set(new_meta)
                      if old_meta.get(k) != new_meta.get(k) and k != "s2build.toolchain")
        if keys:
            out.append("the recorded provenance differs in: " + ", ".join(keys))
        if "s2build.metrics" in keys:
            out.append(f"holdout metrics: {old_meta.get('s2build.metrics')} recorded, "
                       f"{new_meta.get('s2build.metrics')} rebuilt")
    if not out:
        out.append("toolchain, sources and config are identical, so the training or export "
                   "itself is not deterministic on this platform (a nondeterministic kernel, "
                   "thread settings such as OMP_NUM_THREADS, or a library built differently)")
    return out


def verify(project, names, keep=False, out=None):
    """`s2build verify`: rebuild from scratch and compare SHA-256s. Returns the exit code."""
    import shutil
    import subprocess
    import tempfile
    out = out or sys.stdout
    steps, _state = runner.status(project, names)
    lock = lockfile.read(project)
    wanted = _wanted(project, names)
    expected = {}
    if lock is not None:
        diffs = lock_differences(project, lock, [s for s in steps if s.target.name in wanted], names)
        diffs = [d for d in diffs if "but not in" not in d]
        if diffs:
            raise LockStaleError("s2build.lock does not match the sources: " + "; ".join(diffs),
                                 hint="run `s2build lock` first; verify proves the locked "
                                 "artifacts")
        expected = {n: (lock[n]["artifact"], lockfile.LOCK_NAME, lock[n]["toolchain"])
                    for n in wanted}
    else:
        for n in wanted:
            t = project.targets[n]
            sha = _sha(t.output)
            if sha is None:
                raise LockStaleError("no s2build.lock and no artifact to compare with",
                                     hint="run `s2build lock` (or `s2build build`) first")
            expected[n] = (sha, t.config["output"], None)
        print(f"s2build: warning: no {lockfile.LOCK_NAME}; comparing with the current outputs",
              file=sys.stderr)
    scratch = tempfile.mkdtemp(prefix="s2build-verify-")
    try:
        yaml_copy = _scratch_copy(project, steps, scratch)
        sroot = os.path.dirname(yaml_copy)
        for n in wanted:
            print(f"{n}: rebuilding from scratch in an empty cache ({len(steps)} target"
                  f"{'s' if len(steps) != 1 else ''})", file=out)
        out.flush()
        clock = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "s2build", "-f", yaml_copy, "build",
                            "--release", *wanted], cwd=sroot, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - clock
        if p.returncode != 0:
            raise BuildError(f"the scratch rebuild failed (exit {p.returncode}):\n"
                             + (p.stderr.strip() or p.stdout.strip()))
        failures = 0
        for n in wanted:
            t = project.targets[n]
            want, against, locked_tc = expected[n]
            rebuilt_path = os.path.join(sroot, t.config["output"])
            got = _sha(rebuilt_path)
            have = _sha(t.output)
            out_name = t.config["output"]
            problems = []
            if got != want:
                new_meta = _onnx_meta(rebuilt_path) or {}
                old_meta = _onnx_meta(t.output) if have == want else None
                recorded_tc = locked_tc
                if recorded_tc is None and old_meta and "s2build.toolchain" in old_meta:
                    recorded_tc = json.loads(old_meta["s2build.toolchain"])
                current_tc = json.loads(new_meta["s2build.toolchain"]) \
                    if "s2build.toolchain" in new_meta else None
                problems.append(f"a fresh release build gives {got}, but {against} records {want}")
                problems += explain_mismatch(n, recorded_tc, current_tc, old_meta, new_meta)
            if have is None:
                print(f"{n}: note: {out_name} is missing (run `s2build build {n}`)", file=out)
            elif have != want and against != out_name:
                if got == want:
                    problems.append(f"{out_name} was modified after it was built: its SHA-256 "
                                    f"is {have}, but {against} and a fresh rebuild both give "
                                    f"{want} (run `s2build build {n}` to restore it)")
                elif have == got:
                    problems.append(f"{out_name} is the same as the fresh build, so "
                                    f"{against} was written from a different build")
                else:
                    problems.append(f"{out_name} matches neither {against} nor the fresh build "
                                    f"(SHA-256 {have}): modified after it was built?")
            if problems:
                failures += 1
                print(f"{n}: MISMATCH", file=out)
                for line in problems:
                    print(f"  {line}", file=out)
            else:
                print(f"{n}: reproducible: a fresh release build in {seconds:.1f}s gives "
                      f"{got[:16]}..., as {against} records", file=out)
        out.flush()
        if failures:
            raise MismatchError(f"{failures} of {len(wanted)} target"
                                f"{'s' if len(wanted) != 1 else ''} failed verification")
        return errors.OK
    finally:
        if keep:
            print(f"s2build: scratch project kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)

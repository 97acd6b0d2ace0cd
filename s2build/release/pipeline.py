"""Release pipelines: `s2build test`, `lock`, `ci` and `verify`, and their reports.

    test [TARGET...]     build what is stale, run the specs, print one line per spec and a last
                         line `N passed, N failed`; `--junit FILE` (JUnit XML), `--json`
    lock [TARGET...]     release-build, then write s2build.lock (see lockfile.py)
    ci [--frozen]        release builds (never a dev artifact), specs, the lock check and
                         reports: `--junit F`, `--json F`, `--markdown F` (metric deltas against
                         the lock, fit for a pull-request comment). `--frozen` fails (exit 8)
                         before building when the sources no longer match the lock.
    verify [TARGET...]   see verify.py

Exit codes: 7 a spec failed, 8 the lock is missing or stale (`--frozen`, `verify`), 9 `verify`
found a different artifact; build and config errors keep their own codes (errors.py).

Reports: report/junit.py (JUnit XML), report/markdown.py (the ci summary), report/html.py
(`ci --html FILE`: the page of `s2build report`, drawn from what ci built, with its specs).
"""

import json
import os
import sys

from s2build import errors
from s2build.release import lockfile
from s2build.engine import runner
from s2build.errors import BuildError, LockStaleError
from s2build.report import junit as junit_report, markdown as markdown_report
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


def wanted(project, names):
    return list(names) if names else list(project.targets)


# --- Specs ---------------------------------------------------------------------------------

def run_all_specs(project, names, steps, out=None):
    """Run the specs of `names` (default all targets) on their current artifacts, printing one
    line per spec to `out` (None: silent). Returns [specs.run.Outcome]."""
    from s2build.compile.artifact import Artifact
    from s2build.specs import parse as specparse
    from s2build.specs import run as specrun
    outcomes = []
    for name in wanted(project, names):
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


def spec_exit(outcomes):
    """The exit code of a spec run: CONFIG (3) when a spec could not run (a mistake in the spec
    itself: an unknown feature, a line past the end of a file, a missing file), it is the yaml
    that needs the fix; else SPEC (7) when a spec failed on the artifact; else OK."""
    if any(o.error for o in outcomes):
        return errors.CONFIG
    return errors.SPEC if any(not o.passed for o in outcomes) else errors.OK


def summary(outcomes):
    passed, failed = counts(outcomes)
    return SUMMARY.format(passed=passed, failed=failed)


def _write(path, text):
    from s2build import atomic
    atomic.write_text(path, text)


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


def rule_keys(project, target, state):
    """{rule name: key} of the rules whose outputs `target` reads, as last run (state.json)."""
    from s2build.project import rules
    return {n: (state.rules.get(n) or {}).get("key") for n in rules.reads(project, target)
            if (state.rules.get(n) or {}).get("key")}


def bring_rules(project, names, reporter):
    """Run or restore the rules `names` read first: their outputs are the targets' sources."""
    from s2build.engine import rulerun, rules
    rulerun.bring_up_to_date(project, rules.needed(project, names)[0], reporter)


def current_sources(step, state=None):
    """The source-side facts of a target now (the parts of a lock entry that --frozen checks)."""
    from s2build.engine.fingerprint import canonical_digest
    i = step.inputs
    extra = {} if state is None else {"rule": rule_keys(state.project, step.target, state)}
    return {**extra,"source": dict(i.sources), "holdout": dict(i.holdout), "code": dict(i.user_code),
            "specdata": _spec_files(step.target, i), "config": canonical_digest(i.config),
            "dep": dict(i.deps)}


def lock_differences(project, lock, steps, names, state=None):
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
                                                                       current_sources(s, state))]
    if not names:
        out += [f"{n}: in s2build.lock but not in {os.path.basename(project.path)}"
                for n in sorted(set(lock) - set(project.targets))]
    return out


# --- Commands ------------------------------------------------------------------------------

def check_spec_files(project, names):
    """Before building: a spec naming a missing file is a config error (exit 3)."""
    from s2build.specs import parse as specmod
    for name in wanted(project, names):
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
        _write(junit, junit_report.junit_xml(outcomes, list(project.targets)))
    if as_json:
        json.dump({"targets": [_result_dict(r) for r in results], "warnings": rep.warnings,
                   "specs": [o.as_dict() for o in outcomes], "passed": passed,
                   "failed": failed}, sys.stdout, indent=2)
        print()
    else:
        if not outcomes:
            print("s2build: warning: no specs to run (add `specs:` to a target)", file=sys.stderr)
        print(summary(outcomes))
    return spec_exit(outcomes)


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
        ours[name] = lockfile.entry(rec, s.inputs, _spec_files(s.target, s.inputs),
                                    rule_keys(project, s.target, state))
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


def ci(project, names, reporter, frozen=False, junit=None, json_path=None, md_path=None,
       html_path=None):
    """`s2build ci`. Returns the exit code; S2Errors propagate after the reports are written
    (`html_path`: report/html.py's page over what was built, with ci's spec outcomes)."""
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
        bring_rules(project, names, reporter)       # generated sources, before comparing
        steps, cur = runner.status(project, names)
        cur.project = project
        diffs = lock_differences(project, lock, steps, names, cur)
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
            if name in project.rules:                   # a rule's run, not a target
                continue
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
        doc["exit_code"] = spec_exit(outcomes)
        return doc["exit_code"]
    except errors.S2Error as e:
        doc["exit_code"], doc["error"] = e.exit_code, str(e)
        raise
    finally:
        if not doc["specs"] and outcomes:
            doc["specs"] = [o.as_dict() for o in outcomes]
        if junit:
            _write(junit, junit_report.junit_xml(outcomes, list(project.targets)))
        if json_path:
            _write(json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
        if md_path:
            _write(md_path, markdown_report.markdown(doc))
        if html_path:
            _write_html(project, names, html_path, outcomes)


def _write_html(project, names, path, outcomes):
    """ci's HTML report: no build of its own (a target ci did not build says so)."""
    from s2build.report import gather, html
    try:
        html.write(path, gather.collect(project, names, None, build=False,
                                        outcomes=outcomes or None))
    except errors.S2Error as e:
        print(f"s2build: warning: {path}: no HTML report ({e})", file=sys.stderr)

"""`s2build verify`: rebuild from scratch into an empty scratch project (a temporary folder
holding copies of the yaml, sources and user code; a separate process) and compare each
artifact's SHA-256 with s2build.lock; explain any difference in words (toolchain, platform,
threads, a modified output). Exit 9 on a difference, 8 when the lock is missing or stale.
"""

import json
import os
import sys
import time

from s2build import errors
from s2build.engine import runner
from s2build.errors import BuildError, LockStaleError, MismatchError
from s2build.release import lockfile
from s2build.release import pipeline

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


def _scratch_copy(project, steps, scratch, rule_steps=()):
    """Copy the yaml and every input file of `steps` into `scratch`; returns the yaml's copy.
    Paths that climb out of the project ('../x') keep their shape under a deeper root. Files
    a rule writes are not copied (the scratch build runs the rule); its inputs and program
    files are (`rule_steps`: engine/rules.RuleStep)."""
    import shutil
    from s2build.project.rules import overlaps
    rels = set()
    for s in steps:
        i = s.inputs
        rels.update(i.sources, i.holdout, i.user_code)
        if s.target.config.get("specs"):
            from s2build.specs import parse as specmod
            rels.update(specmod.files(s.target))
    for s in rule_steps:
        if s.inputs is not None:
            rels.update(s.inputs.inputs, s.inputs.program)
    made = [o for r in project.rules.values() for o in r.outputs]
    rels = {p for p in rels if not any(overlaps(p, o, f) for o, f in made)}
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
    steps, state = runner.status(project, names)
    lock = lockfile.read(project)
    wanted = pipeline.wanted(project, names)
    expected = {}
    if lock is not None:
        diffs = pipeline.lock_differences(project, lock,
                                          [s for s in steps if s.target.name in wanted], names)
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
        yaml_copy = _scratch_copy(project, steps, scratch, state.rule_steps)
        sroot = os.path.dirname(yaml_copy)
        for n in wanted:
            print(f"{n}: rebuilding from scratch in an empty cache ({len(steps)} target"
                  f"{'s' if len(steps) != 1 else ''})", file=out)
        out.flush()
        clock = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "s2build", "-f", yaml_copy, "build",
                            "--release", *wanted], cwd=sroot, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL,   # rebuilt here: no remote cache, in or out
                           env=dict(os.environ, S2BUILD_REMOTE_CACHE="off"))
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

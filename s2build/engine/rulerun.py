"""Running rules: restore their outputs from the cache or run their commands.

`bring_up_to_date(project, names, reporter, ...)` plans the rules (engine/rules.py) without
the lock; when every rule is up to date it returns at once (the no-op path: no lock, no
subprocess). Otherwise, under `.s2build/lock`, each rule in order is fingerprinted again (its
input rules have just run) and then:

- restored: its outputs are written back from the cache entry (each file atomically; a
  folder is assembled beside itself and swapped in), without running the command;
- run: the previous outputs are moved aside into `.s2build/tmp/`, the command runs in the
  project directory, and every declared output must exist afterwards (a folder: at least
  one file). On a non-zero exit, a missing output, Ctrl-C or any error, whatever the command
  wrote is removed and the previous outputs are moved back: nothing half written is kept.
  On success the outputs are hashed, stored in the cache (store/local.py `put_outputs`) and
  recorded in state.json's `rules`.

The command's environment is clean, and documented in README (*Rules*):

    PATH              the caller's PATH, with the folder of the running Python first
    HOME              the caller's HOME
    LANG, LC_ALL      C.UTF-8
    TZ                UTC
    PYTHONHASHSEED    0
    PYTHONDONTWRITEBYTECODE  1 (no __pycache__ in the project)
    SOURCE_DATE_EPOCH 315532800 (1980-01-01, the earliest a zip file can hold)
    + the rule's `env`

`python` or `python3` as the first word of an argument list is the Python running s2build
(sys.executable). A shell command (`shell: true`) runs through /bin/sh -c.
"""

import os
import shutil
import subprocess
import sys
import time

from s2build import atomic
from s2build.engine import rules as plan_rules
from s2build.engine.locking import BuildLock, save_if_free
from s2build.engine.state import State
from s2build.errors import BuildError
from s2build.report.console import Result
from s2build.store.local import Cache

SOURCE_DATE_EPOCH = "315532800"
TAIL = 1500             # characters of a failed command's stderr shown in the error


class RuleFailed(BuildError):
    """A rule's command failed or did not write a declared output (exit 5, BUILD)."""


def environment(rule):
    """The variables a rule's command sees (see the module docstring)."""
    path = os.environ.get("PATH", os.defpath)
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + path,
           "HOME": os.environ.get("HOME", "/"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "TZ": "UTC", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
           "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    env.update(rule.config["env"])
    return env


def argv(rule):
    cmd = rule.config["command"]
    if rule.config["shell"]:
        return ["/bin/sh", "-c", cmd]
    if cmd[0] in ("python", "python3"):
        return [sys.executable] + cmd[1:]
    return list(cmd)


def bring_up_to_date(project, names, reporter, wait=True, command="build"):
    """Bring rule `names` (in order, from rules.needed) up to date; returns [Result]."""
    if not names:
        return []
    state = State.load(project.state_dir)
    cache = Cache(project.state_dir)
    steps = plan_rules.plan(project, names, state, cache)
    if all(s.action == "up-to-date" for s in steps):
        if state.dirty:
            save_if_free(project, state)
        results = [_result(s, "up-to-date") for s in steps]
        for r in results:
            reporter.done(r)
        return results
    results = []
    with BuildLock(project.state_dir, f"s2build {command}", wait=wait, on_wait=reporter.warn):
        state = State.load(project.state_dir)
        for name in names:
            step = plan_rules.plan(project, [name], state, cache)[0]
            clock = time.perf_counter()
            if step.action == "restore" and _restore(step, state, cache):
                r = _result(step, "restored")
            elif step.action == "up-to-date":
                r = _result(step, "up-to-date")
            else:
                reporter.start(name, "build", step.reasons)
                try:
                    _run(step, project, state, cache)
                except RuleFailed as e:
                    reporter.done(Result(name, "failed", reasons=step.reasons, detail=str(e)))
                    e.reported = True
                    raise
                r = _result(step, "ran")
            r.seconds = time.perf_counter() - clock
            state.save()
            reporter.done(r)
            results.append(r)
    return results


def _result(step, outcome):
    outs = ", ".join(o + ("/" if f else "") for o, f in step.rule.outputs)
    return Result(step.rule.name, outcome, reasons=step.reasons, output=outs,
                  key=step.key or "")


def _record(step, digests):
    i = step.inputs
    return {"key": i.key, "outputs": digests, "inputs": i.inputs, "program": i.program,
            "config": i.config, "toolchain": i.toolchain, "user_scan": i.scan}


def _restore(step, state, cache):
    """Write the cached outputs back; False on a miss (then the rule runs)."""
    got = cache.get_outputs(step.key)
    if got is None:
        return False
    files, _record_ = got
    root = step.rule.root
    for rel, folder in step.rule.outputs:
        if not folder:
            if rel in files:
                atomic.write_bytes(os.path.join(root, rel), files[rel])
            continue
        final = os.path.join(root, rel)
        os.makedirs(os.path.dirname(final) or root, exist_ok=True)
        new = final.rstrip("/") + ".s2tmp-new"
        shutil.rmtree(new, ignore_errors=True)
        for f, data in files.items():
            if f.startswith(rel + "/"):
                p = os.path.join(new, os.path.relpath(f, rel))
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as fh:
                    fh.write(data)
        os.makedirs(new, exist_ok=True)
        old = final.rstrip("/") + ".s2tmp-old"
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    from s2build.engine import fingerprint
    digests, _ = fingerprint.digest_files(plan_rules.output_files(step.rule), root, state.files)
    state.rules[step.rule.name] = _record(step, digests)
    return True


def _run(step, project, state, cache):
    """Run the command with the previous outputs moved aside; keep its outputs only when the
    command succeeded and wrote every one of them."""
    import tempfile
    from s2build.engine import fingerprint
    rule, root = step.rule, project.root
    if step.inputs is None:                  # cannot happen: plan re-fingerprints each rule
        raise RuleFailed(f"rule '{rule.name}': its inputs are not ready", rule.loc())
    tmp = os.path.join(project.state_dir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    backup = tempfile.mkdtemp(prefix="rule-", dir=tmp)
    moved = []
    try:
        for i, (rel, folder) in enumerate(rule.outputs):
            path = os.path.join(root, rel)
            if os.path.lexists(path):
                os.replace(path, os.path.join(backup, str(i)))
                moved.append(i)
            os.makedirs(path if folder else os.path.dirname(path) or root, exist_ok=True)
        try:
            proc = subprocess.run(argv(rule), cwd=root, env=environment(rule),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        except OSError as e:
            raise RuleFailed(f"rule '{rule.name}': cannot run {argv(rule)[0]!r}: {e.strerror}",
                             rule.loc("command"), "check the command's first word") from None
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace")[-TAIL:].rstrip()
            raise RuleFailed(f"rule '{rule.name}': command failed with exit status "
                             f"{proc.returncode}" + (f":\n{tail}\n" if tail else ""),
                             rule.loc("command"), "fix the command or its inputs; the "
                             "previous outputs are kept")
        for i, (rel, folder) in enumerate(rule.outputs):
            path = os.path.join(root, rel)
            ok = os.path.isfile(path) if not folder else \
                any(files for _d, _s, files in os.walk(path))
            if not ok:
                raise RuleFailed(f"rule '{rule.name}': the command did not write its output "
                                 f"'{rule.config['outputs'][i]}'", rule.loc("outputs", i),
                                 "make the command write it (paths are relative to the "
                                 "project folder), or remove it from outputs; the previous "
                                 "outputs are kept")
    except BaseException:
        for i, (rel, folder) in enumerate(rule.outputs):      # drop what the command wrote
            path = os.path.join(root, rel)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.unlink(path)
            if i in moved:
                os.replace(os.path.join(backup, str(i)), path)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    rels = plan_rules.output_files(rule)
    files = {}
    for rel in rels:
        with open(os.path.join(root, rel), "rb") as f:
            files[rel] = f.read()
    cache.put_outputs(step.key, files,            # no rule name: equal recipes share it
                      {"facts": {"ran_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
    digests, _ = fingerprint.digest_files(rels, root, state.files)
    state.rules[rule.name] = _record(step, digests)

"""Watch mode: rebuild when the sources, the yaml or referenced user code change.

`watch(project, names, ...)` runs three threads:

    observer (watchdog)  records the paths that events touch, relative to the project root,
                         keeping only paths that matter (watchrules.Rules)
    debouncer            once no such event arrived for a quiet window (one global window:
                         `debounce` seconds, or FIRST_WINDOW for a save that follows no other
                         within BURST_GAP seconds, so that a lone save builds at once while a
                         burst of saves or a checkout is awaited), hashes the touched paths; a
                         path whose SHA-256 (None when deleted) differs from the last one seen
                         is a change: it marks the project dirty and sets `cancel`, so a
                         running build stops between two training steps (train.Cancelled) and
                         starts again
    main                 builds while dirty: reloads the yaml when it changed, runs
                         runner.build (one line per target: what, why, time, metrics), then the
                         targets' specs (counts, and the specs whose verdict changed), then
                         with `report` rewrites that HTML page; builds are dev builds
                         (incremental when they can be) unless mode="release"
    warm-up              once watching starts, imports torch, onnx and onnxruntime and takes
                         one optimizer step and one export of a tiny network, so that the first
                         edit does not pay the ~2-3 s a fresh process pays; a build waits for it

A touch, a save of identical bytes and s2build's own writes (`.s2build/`, outputs, atomic-write
temporaries) never build. An editor's atomic save (write a temporary, rename it over the file)
is a move event whose destination matters; a deletion hashes to None. A broken edit (bad row,
bad yaml, a glob matching nothing) prints its diagnostic and watching goes on; nothing is
recorded, so the last good artifact stays in place. Ctrl-C stops cleanly (exit 130).
"""

import os
import sys
import threading
import time

from s2build import errors
from s2build.engine import fingerprint
from s2build.engine.watchrules import Rules
from s2build.errors import S2Error

DEBOUNCE = 0.3        # seconds without a relevant event before changes are examined
FIRST_WINDOW = 0.1    # the quiet window after a lone save (none other within BURST_GAP)
BURST_GAP = 1.0       # seconds between saves that make them one burst
SAVE_GAP = 0.05       # events closer than this are one save (an editor's write, rename, ...)


WATCH_MEMO_BYTES = 512 * 2**20


class Watcher:
    def __init__(self, project, names, mode="release", debounce=DEBOUNCE, verbose=False,
                 out=None, err=None, report=None):
        self.project, self.names, self.mode = project, list(names or []), mode
        self.report = os.path.abspath(report) if report else None   # the page to keep current
        self.debounce, self.verbose = debounce, verbose
        self.out, self.err = out or sys.stdout, err or sys.stderr
        self.cv = threading.Condition()
        self.pending, self.last_event = set(), 0.0      # touched paths awaiting the debounce
        self.save_started, self.window = -BURST_GAP, debounce   # the current save; its window
        self.warm = None                                # the warm-up thread
        self.changes = set()                            # changed paths not yet built
        self.wake = threading.Event()                   # changes is not empty
        self.cancel = threading.Event()                 # stops the running build
        self.stopping = threading.Event()
        self.stat = {}                                  # stat cache: rel -> [size, mtime, ino, sha]
        self.rules = Rules(project, self.names)
        self.known = self._snapshot(self.rules)         # rel -> sha256 last seen
        self.specs_seen = {}                            # spec id -> passed, at the last build
        self.observer = None
        self.watched = ()                               # folders scheduled on the observer
        self.rearm = threading.Event()                  # a watched folder was replaced

    # --- the observer and debouncer threads -----------------------------------------------
    def _digest(self, rel):
        """SHA-256 of the file now, None when it does not exist (stat cache first)."""
        path = os.path.join(self.rules.root, rel)
        if not os.path.isfile(path):
            return None
        try:
            digests, _ = fingerprint.digest_files([rel], self.rules.root, self.stat)
        except (S2Error, OSError):
            return None
        return digests[rel]

    def _snapshot(self, rules):
        return {rel: self._digest(rel) for rel in rules.files()}

    def _touched(self, paths):
        """Observer thread: record `paths` (absolute) that matter."""
        rules = self.rules
        keep = set()
        for p in paths:
            if self.report is not None and os.path.abspath(p) == self.report:
                continue                                # our own write
            rel = os.path.normpath(os.path.relpath(p, rules.root))
            if rules.matters(rel):
                keep.add(rel)
        if keep:
            with self.cv:
                now = time.monotonic()
                if now - self.last_event > SAVE_GAP:     # a new save: lone, or in a burst
                    lone = now - self.save_started > BURST_GAP
                    self.window = min(FIRST_WINDOW, self.debounce) if lone else self.debounce
                    self.save_started = now
                self.pending |= keep
                self.last_event = now
                self.cv.notify_all()

    def on_event(self, event):
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path] + ([event.dest_path] if getattr(event, "dest_path", "") else [])
        if event.is_directory:
            if event.event_type not in ("deleted", "moved", "created"):
                return
            if any(os.path.normpath(p) == w or w.startswith(os.path.normpath(p) + os.sep)
                   for p in paths for w in self.watched):
                self.rearm.set()             # a watched folder replaced: watch the new one
                self.wake.set()
            expanded = []
            for p in paths:                  # a folder moved or deleted: its files went with it
                prefix = os.path.relpath(p, self.rules.root) + os.sep
                expanded += [os.path.join(self.rules.root, r) for r in list(self.known)
                             if r.startswith(prefix)]
                for dirpath, _dirs, files in os.walk(p):
                    expanded += [os.path.join(dirpath, f) for f in files]
            paths = expanded
        self._touched(paths)

    def _debounce_loop(self):
        while not self.stopping.is_set():
            with self.cv:
                while not self.pending and not self.stopping.is_set():
                    self.cv.wait(1.0)
                while not self.stopping.is_set():
                    left = self.last_event + self.window - time.monotonic()
                    if left <= 0:
                        break
                    self.cv.wait(left)
                paths, self.pending = self.pending, set()
                changed, same = [], []
                for rel in sorted(paths):
                    now = self._digest(rel)
                    if now != self.known.get(rel):
                        changed.append(rel)
                        if now is None:
                            self.known.pop(rel, None)
                        else:
                            self.known[rel] = now
                    else:
                        same.append(rel)
                if changed:
                    self.changes.update(changed)
                    self.cancel.set()
                    self.wake.set()
            if same and self.verbose:
                self._say(f"s2build: ignored {', '.join(same[:3])}"
                          + (f" +{len(same) - 3} more" if len(same) > 3 else "")
                          + " (content unchanged)", err=True)

    # --- the main thread ------------------------------------------------------------------
    def _say(self, text, err=False):
        stream = self.err if err else self.out
        print(text, file=stream, flush=True)

    def _schedule(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        if self.observer is not None:
            self.observer.unschedule_all()
        else:
            self.observer = Observer()
            self.observer.daemon = True
        handler = FileSystemEventHandler()
        handler.on_any_event = self.on_event
        folders = sorted(self.rules.folders().items())
        for folder, recursive in folders:
            self.observer.schedule(handler, folder, recursive=recursive)
        self.watched = tuple(os.path.normpath(f) for f, _r in folders)
        if not self.observer.is_alive():
            self.observer.start()

    def _rearm(self):
        """Watch the folders as they are now (one was deleted, moved or replaced), then look at
        every file: what changed while no watch was on its folder is built."""
        self.rearm.clear()
        self._schedule()
        with self.cv:
            rels = set(self.rules.files()) | set(self.known)
        self._touched([os.path.join(self.rules.root, r) for r in rels])

    def _reload(self):
        """Load the yaml again. Returns True when it is valid (rules and watches follow it)."""
        from s2build.project import config
        try:
            project = config.load(self.project.path)
            if self.names:
                from s2build.project import graph
                graph.order(project, self.names)
        except S2Error as e:
            self._say(str(e) if e.location else f"s2build: error: {e}", err=True)
            return False
        rules = Rules(project, self.names)
        with self.cv:
            self.project, self.rules = project, rules
            self.known = self._snapshot(rules)
        self._schedule()
        return True

    def _cycle(self, changed, first=False):
        from s2build.report import console as report
        from s2build.engine import runner
        clock = time.perf_counter()
        if not first:
            shown = ", ".join(changed[:3]) + (f" +{len(changed) - 3} more" if len(changed) > 3 else "")
            self._say(f"[{time.strftime('%H:%M:%S')}] changed: {shown}")
        if self.rules.yaml in changed and not self._reload():
            self._say("s2build: the yaml is invalid; the last good artifacts stay in place; "
                      "watching for changes (Ctrl-C to stop)", err=True)
            return
        rep = _Tracking(report.Console(verbose=self.verbose, stream=self.out, err=self.err))
        if self.warm is not None:
            self.warm.join()                # no two threads importing torch at once
        try:
            results = runner.build(self.project, self.names, rep, cancel=self.cancel,
                                   command="watch", mode=self.mode)
        except S2Error as e:
            self._say(str(e) if e.location else f"s2build: error: {e}", err=True)
            self._write_report({}, {"exit_code": e.exit_code, "message": str(e)})
            self._say("s2build: nothing recorded; the last good artifact stays in place; "
                      "watching for changes (Ctrl-C to stop)", err=True)
            return
        except Exception as e:
            train = sys.modules.get("s2build.compile.train")
            if train is not None and isinstance(e, train.Cancelled):
                self._say(f"{rep.current}: cancelled (a newer edit arrived); starting again")
                return
            # s2build's own bug: said as the CLI says it, and the watch goes on (the next edit
            # builds again); nothing was recorded for the target that raised
            if self.verbose:
                import traceback
                traceback.print_exc(file=self.err)
            self._say(f"s2build: internal error: {type(e).__name__}: {e} (run with -v for a "
                      "traceback, and please report it)", err=True)
            self._say("s2build: nothing recorded; the last good artifact stays in place; "
                      "watching for changes (Ctrl-C to stop)", err=True)
            return
        finally:
            rep.finish()
        self._write_report(self._run_specs(results))
        self._say(f"s2build: done in {time.perf_counter() - clock:.1f}s; watching for changes "
                  "(Ctrl-C to stop)")

    def _write_report(self, outcomes, build_error=None):
        """`watch --report FILE`: the page of `s2build report` for this cycle (`outcomes`: the
        specs it ran, {target: [Outcome]}), replaced atomically; a failure is said, no more."""
        if self.report is not None:
            from s2build.report import html
            try:
                html.render(self.project, self.names, self.report, outcomes=outcomes,
                            mode=self.mode, build_error=build_error)
                self._say(f"report: {os.path.relpath(self.report, self.project.root)}")
            except Exception as e:                      # S2Error or a bug: watching goes on
                self._say(f"s2build: report not written: {type(e).__name__}: {e}", err=True)

    def _run_specs(self, results):
        """Run the specs of the targets this cycle produced; print counts and changed verdicts.
        Returns {target: [Outcome]} of the targets whose specs ran."""
        from s2build.engine import runner
        from s2build.specs import parse as specmod
        from s2build.specs import run as specrun
        from s2build.store.local import Cache
        from s2build.engine.state import State
        ran = {}
        try:
            steps = runner.plan(self.project, self.names, State.load(self.project.state_dir),
                                Cache(self.project.state_dir), self.mode)
        except S2Error as e:
            self._say(str(e), err=True)
            return ran
        steps = {s.target.name: s for s in steps}
        for r in results:
            target, step = self.project.targets[r.name], steps.get(r.name)
            try:
                parsed = specmod.parse(target)
                if not parsed or step is None or step.action != "up-to-date":
                    continue
                specmod.files(target)
                runner_ = specrun.Runner(target, step.inputs, self.project.state_dir)
                outcomes = [runner_.run(s) for s in parsed]
            except S2Error as e:
                self._say(str(e), err=True)
                continue
            ran[r.name] = outcomes
            flips = []
            for o in outcomes:
                before = self.specs_seen.get(o.spec.id)
                if before is not None and before != o.passed:
                    flips.append(f"'{o.spec.name}' {'PASSED' if before else 'FAILED'} -> "
                                 f"{'PASSED' if o.passed else 'FAILED'}")
                self.specs_seen[o.spec.id] = o.passed
            passed = sum(o.passed for o in outcomes)
            line = f"{r.name}: specs {passed} passed, {len(outcomes) - passed} failed"
            self._say(line + (f"; changed: {'; '.join(flips)}" if flips else ""))
            for o in outcomes:
                if not o.passed:
                    self._say(f"  {o.spec.id} FAILED: {o.spec.loc}: {o.message}")
        return ran

    def run(self):
        """Watch until Ctrl-C (returns errors.INTERRUPTED)."""
        self._schedule()
        debouncer = threading.Thread(target=self._debounce_loop, name="s2build-debounce",
                                     daemon=True)
        debouncer.start()
        try:
            self._cycle([], first=True)
            exporters = {"legacy"} if self.mode != "release" else \
                {t.config["export"]["exporter"] for t in self.project.targets.values()}
            self.warm = threading.Thread(target=_warm_up, args=(exporters,), daemon=True,
                                         name="s2build-warm-up")
            self.warm.start()
            while True:
                while not self.wake.wait(0.5):
                    pass
                if self.rearm.is_set():
                    self._rearm()
                with self.cv:
                    changed, self.changes = sorted(self.changes), set()
                    self.wake.clear()
                    self.cancel.clear()
                if changed:
                    self._cycle(changed)
        except KeyboardInterrupt:
            self._say("s2build: watch stopped", err=True)
            return errors.INTERRUPTED
        except errors.Interrupted as e:         # SIGTERM: a build in flight records nothing
            self._say("s2build: watch stopped", err=True)
            return e.code
        finally:
            self.stopping.set()
            self.cancel.set()
            with self.cv:
                self.cv.notify_all()
            if self.observer is not None:
                self.observer.stop()
                self.observer.join(timeout=5)


def _warm_up(exporters):
    """Pay the one-time costs of a process's first build now: imports, the first optimizer
    step, the first run of each exporter in `exporters` and of an
    onnxruntime session. Best effort and silent: the build itself reports what is wrong."""
    try:
        import numpy as np
        import torch

        from s2build.compile import export, optim
        from s2build.compile.artifact import Artifact
        net = torch.nn.Linear(2, 2)
        opt = optim.Adam(net.parameters())
        net(torch.zeros(2, 2)).sum().backward()
        opt.step()
        for exporter in sorted(exporters):
            onnx_bytes = export.export_onnx(net.eval(), torch.zeros(2, 2), output_names=["y"],
                                            metadata={}, exporter=exporter)
        Artifact(data=onnx_bytes).run(np.zeros((2, 2), np.float32))
    except Exception:
        pass


class _Tracking:
    """A reporter that remembers which target is being built (to name a cancelled build)."""

    def __init__(self, inner):
        self.inner, self.current = inner, "build"

    def start(self, name, action, reasons):
        self.current = name
        self.inner.start(name, action, reasons)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def watch(project, names, mode="dev", debounce=DEBOUNCE, verbose=False, report=None):
    """`s2build watch`: build, then rebuild on every relevant change until Ctrl-C; with
    `report` (a path), rewrite the HTML report there after each cycle."""
    from s2build.data import shards
    shards.MEMO.limit = WATCH_MEMO_BYTES       # a long-lived process re-reads no unchanged shard
    return Watcher(project, names, mode=mode, debounce=debounce, verbose=verbose,
                   report=report).run()

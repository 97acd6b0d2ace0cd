"""Reporters: how build progress and outcomes reach people (console) and machines (JSON).

The runner calls `start(name, action, reasons)`, `done(result)`, `warn(text)` and `progress(...)`;
`finish()` returns nothing but may print a summary. Console output goes to stderr for progress
and warnings and stdout for outcomes; the JSON reporter prints one document on stdout at the end.
"""

import json
import sys


class Result:
    """The outcome of one target or rule: up-to-date | restored | built | ran (a rule's
    command) | failed | cancelled | skipped (`-j`: a dependency failed, or --fail-fast stopped
    the run). `detail`: timings, the error text, or why it was skipped; `stale_after_build`:
    inputs edited during training."""

    FIELDS = ("name", "outcome", "reasons", "seconds", "metrics", "output", "key", "detail",
              "stale_after_build")

    def __init__(self, name, outcome, reasons=None, seconds=0.0, metrics=None, output="", key="",
                 detail="", stale_after_build=None):
        self.name, self.outcome, self.reasons = name, outcome, reasons or []
        self.seconds, self.metrics, self.output, self.key = seconds, metrics or {}, output, key
        self.detail, self.stale_after_build = detail, stale_after_build or []

    def as_dict(self):
        d = {f: getattr(self, f) for f in self.FIELDS}
        d["reasons"] = [{"kind": x.kind, "text": x.text} for x in self.reasons]
        return d


def _fmt_metrics(m):
    return " ".join(f"{k}={v:.4g}" for k, v in m.items())


class Console:
    def __init__(self, verbose=False, stream=None, err=None):
        self.verbose = verbose
        self.out = stream or sys.stdout
        self.err = err or sys.stderr
        self._bar = None

    def warn(self, text):
        self._close_bar()
        print(f"s2build: warning: {text}", file=self.err)

    def start(self, name, action, reasons):
        if action == "build":
            why = "; ".join(r.text for r in reasons[:3]) + (f"; +{len(reasons) - 3} more"
                                                             if len(reasons) > 3 else "")
            print(f"{name}: building ({why})", file=self.err)

    def progress(self, name, epoch, epochs, loss):
        if not self.err.isatty():
            if self.verbose:
                print(f"{name}: epoch {epoch}/{epochs} loss {loss:.4g}", file=self.err)
            return
        if self._bar is None:
            from tqdm import tqdm
            self._bar = tqdm(total=epochs, desc=f"{name}: training", unit="epoch",
                             file=self.err, leave=False)
        self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        self._bar.update(epoch - self._bar.n)
        if epoch == epochs:
            self._close_bar()

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def done(self, r):
        self._close_bar()
        why = "; ".join(x.text for x in r.reasons[:3])
        if r.outcome == "up-to-date":
            line = f"{r.name}: up to date" + (f" ({r.detail})" if r.detail else "")
        elif r.outcome == "restored":
            where = "remote cache" if r.detail.startswith("remote cache") else "cache"
            line = f"{r.name}: restored from {where} ({why}) -> {r.output}"
        elif r.outcome == "ran":                   # a rule's command (engine/rulerun.py)
            line = f"{r.name}: ran in {_secs(r.seconds)} ({why}) -> {r.output}"
        elif r.outcome == "built":
            line = f"{r.name}: built in {_secs(r.seconds)} ({why}): {_fmt_metrics(r.metrics)} -> {r.output}"
            if self.verbose and r.detail:
                line += f"\n  {r.detail}"
        elif r.outcome in ("skipped", "cancelled") and r.detail:
            line = f"{r.name}: {r.outcome} ({r.detail})"
        else:
            # the diagnostic also goes to stderr; repeated here (first line) so that either
            # stream alone says why
            reason = r.detail.splitlines()[0] if r.detail else ""
            line = f"{r.name}: {r.outcome}" + (f": {reason}" if reason else "")
        print(line, file=self.out)
        for p in r.stale_after_build:
            self.warn(f"{p} changed during the build; {r.name} is stale again (run build again)")
        self.out.flush()

    def finish(self):
        self._close_bar()


class Collect:
    """A silent reporter that keeps the Result objects (for --json and CI reports)."""

    def __init__(self):
        self.results, self.warnings = [], []

    def warn(self, text):
        self.warnings.append(text)

    def start(self, name, action, reasons):
        pass

    def progress(self, name, epoch, epochs, loss):
        pass

    def done(self, r):
        self.results.append(r)

    def finish(self):
        pass


class Json(Collect):
    """Collects results; prints {"targets": [...], "warnings": [...]} at `finish`."""

    def __init__(self, stream=None):
        super().__init__()
        self.out = stream or sys.stdout

    def finish(self):
        json.dump({"targets": [r.as_dict() for r in self.results], "warnings": self.warnings},
                  self.out, indent=2)
        self.out.write("\n")


def _secs(seconds):
    """0.42s below ten seconds, 12.3s above."""
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"

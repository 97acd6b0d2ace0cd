"""Behaviour specs: parsing and checking a target's `specs:` (standard library only).

Specs live in the yaml under a target's `specs:` list. They are not part of the build key:
changing a bound re-runs the specs, it never retrains. Each spec has a `name` (unique within
the target) and exactly one kind:

    specs:
      - name: a textbook cultivar-0 wine          # example: one input, the expected output
        example:
          input: {alcohol: 14.2, ash: 2.4, ...}   #   inline, by feature name (all features), or
          # file: data/wine-1.csv                 #   a row of a file in the target's format
          # line: 12                              #   (omit for one-example-per-file data)
          expect: 0                               #   class name; regression: a value (or list);
                                                  #   multilabel: 0/1 list; a file row: default
                                                  #   is the row's own label
          # tolerance: 0.1                        #   regression: |prediction - expect| <= this
      - name: holdout accuracy                    # gate: a metric over rows, with a bound
        gate: accuracy >= 0.9                     #   METRIC (>=|>|<=|<) NUMBER
        over: holdout                             #   holdout (default) or a glob of files
      - name: robust to measurement noise         # invariance: the output must not change
        invariance:
          noise: 0.05          # gaussian noise, std = this x each feature's std over the rows
          seed: 0              # of the noise (default 0)
          set: {magnesium: 100}                   # features set to a value
          shift: {x: 1, y: 0}  # image inputs (or N*N flat features): shift, zero fill
          min_agreement: 1.0   # fraction of rows that must keep their class (default 1.0)
          tolerance: 0.0       # regression: max |change| of the output
        over: holdout

Gate metrics: the built-in metrics that fit the target's task (s2build/project/registry.py),
or the short name of a user metric the target lists in `metrics:`. A gate computes its metric
with the implementation the build used (s2build/compile/metrics.py), on the artifact.

`parse(target)` checks the specs' contents with yaml locations; it runs inside config.load (the
no-op path). `files(target)` checks that the files the specs name exist (when specs run, or a
lock is written). Running them is s2build/specs/run.py.
"""

import difflib
import os
import re

from s2build.errors import ConfigError
from s2build.project import registry
from s2build.project.schema import TABLES

KINDS = ("example", "gate", "invariance")
GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*"
                  r"(?P<bound>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
EXAMPLE_KEYS = ("input", "file", "line", "expect", "tolerance")
INVARIANCE_KEYS = ("noise", "seed", "set", "shift", "min_agreement", "tolerance")
SHIFT_KEYS = ("x", "y")
HOLDOUT = "holdout"


class Spec:
    """One parsed spec. `loc` is the yaml location of its kind's value; `params` its checked
    contents; `over` is 'holdout' or a glob (gate, invariance), None for examples."""

    __slots__ = ("target", "index", "name", "kind", "loc", "params", "over", "locs")

    def __init__(self, target, index, name, kind, loc, params, over, locs):
        self.target, self.index, self.name, self.kind = target, index, name, kind
        self.loc, self.params, self.over, self.locs = loc, params, over, locs

    @property
    def id(self):
        return f"{self.target}::{self.name}"


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _unknown_keys(given, known, where, base, target):
    for k in given:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
            raise ConfigError(f"{where}: unknown key '{k}'",
                              target.loc(*base, k, "@key"), hint)


def _files_exist(target, pattern, loc):
    import glob
    if os.path.isabs(pattern):
        raise ConfigError(f"'{pattern}' is absolute", loc,
                          "use a path relative to s2build.yaml's folder")
    if glob.has_magic(pattern):
        found = [m for m in glob.glob(pattern, root_dir=target.root, recursive=True)
                 if os.path.isfile(os.path.join(target.root, m))]
        if not found:
            raise ConfigError(f"glob '{pattern}' matches no files", loc,
                              "check the path; it is relative to s2build.yaml's folder")
        return sorted(found)
    if not os.path.isfile(os.path.join(target.root, pattern)):
        raise ConfigError(f"file '{pattern}' not found", loc,
                          "check the path; it is relative to s2build.yaml's folder")
    _same_format(target, pattern, loc)
    return [os.path.normpath(pattern)]


# file name endings that say a format; a spec's file is read by the target's loader
EXTENSIONS = {"csv": (".csv", ".tsv"), "jsonl": (".jsonl", ".json", ".ndjson"),
              "parquet": (".parquet", ".pq"), "feather": (".feather", ".arrow"),
              "npz": (".npz",), "npy": (".npy",), "images": (".png", ".jpg", ".jpeg")}


def _same_format(target, rel, loc):
    """A file whose name says another format than the target's is a ConfigError at `loc`."""
    fmt = target.config["loader"]["format"]
    ext = os.path.splitext(rel)[1].lower()
    other = next((f for f, exts in EXTENSIONS.items() if ext in exts), fmt)
    if other != fmt and ext not in EXTENSIONS.get(fmt, ()):
        raise ConfigError(f"'{rel}' is a {other} file; specs read files in the target's "
                          f"format ({fmt})", loc,
                          f"write the row into a {fmt} file, or give it inline as "
                          "example.input" if fmt in TABLES + ("jsonl",) else
                          f"use a {fmt} file")


def parse(target):
    """[Spec] of `target`, checked; raises ConfigError at the offending yaml location."""
    task = target.config["loader"].get("task", "classification")
    metrics = registry.metrics_for(task) + [u.name for u in registry.metrics_of(target.config)
                                            if u.builtin is None]
    out, seen = [], {}
    for i, item in enumerate(target.config.get("specs") or []):
        base = ("specs", i)
        name = item["name"]
        if not name.strip():
            raise ConfigError("spec name is empty", target.loc(*base, "name"))
        if name in seen:
            raise ConfigError(f"duplicate spec name '{name}'", target.loc(*base, "name"),
                              f"first used at {seen[name]}")
        seen[name] = target.loc(*base, "name")
        kinds = [k for k in KINDS if item.get(k) is not None]
        if len(kinds) != 1:
            got = f" (got {' and '.join(kinds)})" if kinds else ""
            raise ConfigError(f"spec '{name}': give exactly one of example, gate, "
                              f"invariance{got}", target.loc(*base))
        kind = kinds[0]
        loc = target.loc(*base, kind)
        over = item.get("over")
        if kind == "example":
            if over is not None:
                raise ConfigError(f"spec '{name}': 'over' applies to gates and invariances",
                                  target.loc(*base, "over"),
                                  "an example names its row with example.file and example.line")
            params = _parse_example(target, task, name, item["example"], base + ("example",))
        elif kind == "gate":
            m = GATE.match(item["gate"])
            if not m:
                raise ConfigError(f"spec '{name}': cannot read gate '{item['gate']}'", loc,
                                  "write METRIC OP NUMBER, e.g. 'accuracy >= 0.95'; "
                                  "OP is one of >=, >, <=, <")
            if m["metric"] not in metrics:
                close = difflib.get_close_matches(m["metric"], metrics, n=1)
                hint = f"did you mean '{close[0]}'?" if close else \
                    f"metrics for a {task} target: " + ", ".join(metrics)
                raise ConfigError(f"spec '{name}': unknown metric '{m['metric']}'", loc, hint)
            params = {"metric": m["metric"], "op": m["op"], "bound": float(m["bound"]),
                      "text": f"{m['metric']} {m['op']} {m['bound']}"}
        else:
            params = _parse_invariance(target, task, name, item["invariance"],
                                       base + ("invariance",))
        if kind != "example":
            over = HOLDOUT if over is None else over
        out.append(Spec(target.name, i, name, kind, loc, params, over,
                        {"spec": target.loc(*base)}))
    return out


def _parse_example(target, task, name, ex, base):
    where = f"spec '{name}': example"
    _unknown_keys(ex, EXAMPLE_KEYS, where, base, target)
    has_input, has_file = ex.get("input") is not None, ex.get("file") is not None
    if has_input == has_file:
        raise ConfigError(f"{where}: give either 'input' (features by name) or 'file' "
                          "(with 'line')", target.loc(*base))
    if has_input:
        inp = ex["input"]
        # tables take raw columns: a category's text, or null / "NA" for a missing value
        table = target.config["loader"]["format"] in TABLES
        ok = (lambda v: _num(v) or v is None or isinstance(v, str)) if table else _num
        if isinstance(inp, dict):
            for k, v in inp.items():
                if not ok(v):
                    raise ConfigError(f"{where}.input.{k}: expected a number"
                                      + (", a category's text or null" if table else "")
                                      + f", got {v!r}", target.loc(*base, "input", k))
        elif not (isinstance(inp, list) and inp and all(ok(v) for v in inp)):
            raise ConfigError(f"{where}.input: expected a mapping of feature name to number "
                              "(or a list of numbers in feature order)",
                              target.loc(*base, "input"))
    else:
        if not isinstance(ex["file"], str):
            raise ConfigError(f"{where}.file: expected a path, got {ex['file']!r}",
                              target.loc(*base, "file"))
    if "line" in ex and ex["line"] is not None:
        if not has_file:
            raise ConfigError(f"{where}.line: only with 'file'", target.loc(*base, "line"))
        if not isinstance(ex["line"], int) or isinstance(ex["line"], bool) or ex["line"] < 1:
            raise ConfigError(f"{where}.line: expected a line number (1 or more), got "
                              f"{ex['line']!r}", target.loc(*base, "line"))
    if ex.get("expect") is None and not has_file:
        raise ConfigError(f"{where}: missing 'expect'", target.loc(*base),
                          "the expected class" + (" or value" if task == "regression" else ""))
    expect, tol = ex.get("expect"), ex.get("tolerance")
    if expect is None:                  # a row of a file: its own label is expected
        if task == "regression" and tol is None:
            raise ConfigError(f"{where}: a regression example needs 'tolerance'",
                              target.loc(*base), "passes when |prediction - expect| <= tolerance")
        if task != "regression" and tol is not None:
            raise ConfigError(f"{where}.tolerance: only for regression targets",
                              target.loc(*base, "tolerance"))
    elif task == "multilabel":
        if not (isinstance(expect, list) and expect and all(v in (0, 1) for v in expect)):
            raise ConfigError(f"{where}.expect: expected a list of 0/1 labels, one per output, "
                              f"got {expect!r}", target.loc(*base, "expect"))
        if tol is not None:
            raise ConfigError(f"{where}.tolerance: only for regression targets",
                              target.loc(*base, "tolerance"))
    elif task == "regression":
        ok = _num(expect) or (isinstance(expect, list) and expect and all(_num(v) for v in expect))
        if not ok:
            raise ConfigError(f"{where}.expect: expected a number (or a list of numbers), got "
                              f"{expect!r}", target.loc(*base, "expect"))
        if tol is None:
            raise ConfigError(f"{where}: a regression example needs 'tolerance'",
                              target.loc(*base), "passes when |prediction - expect| <= tolerance")
    else:
        if not isinstance(expect, (str, int)) or isinstance(expect, bool):
            raise ConfigError(f"{where}.expect: expected a class name, got {expect!r}",
                              target.loc(*base, "expect"))
        classes = target.config["loader"].get("classes")
        names = [str(c) for c in range(classes)] if isinstance(classes, int) else classes
        if names and str(expect) not in names:
            close = difflib.get_close_matches(str(expect), names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "classes: " + ", ".join(names)
            raise ConfigError(f"{where}.expect: unknown class '{expect}'",
                              target.loc(*base, "expect"), hint)
        if tol is not None:
            raise ConfigError(f"{where}.tolerance: only for regression targets",
                              target.loc(*base, "tolerance"))
    if tol is not None and (not _num(tol) or tol < 0):
        raise ConfigError(f"{where}.tolerance: expected a number >= 0, got {tol!r}",
                          target.loc(*base, "tolerance"))
    return {"input": ex.get("input"), "file": ex.get("file"), "line": ex.get("line"),
            "expect": expect, "tolerance": float(tol) if tol is not None else None}


def _parse_invariance(target, task, name, inv, base):
    where = f"spec '{name}': invariance"
    _unknown_keys(inv, INVARIANCE_KEYS, where, base, target)
    if not any(inv.get(k) is not None for k in ("noise", "set", "shift")):
        raise ConfigError(f"{where}: give a perturbation: noise, set or shift", target.loc(*base))
    noise, seed = inv.get("noise"), inv.get("seed", 0)
    if noise is not None and (not _num(noise) or noise <= 0):
        raise ConfigError(f"{where}.noise: expected a number above 0, got {noise!r}",
                          target.loc(*base, "noise"))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}.seed: expected an integer, got {seed!r}",
                          target.loc(*base, "seed"))
    setv = inv.get("set")
    if setv is not None:
        if not isinstance(setv, dict) or not setv:
            raise ConfigError(f"{where}.set: expected a mapping of feature name to number",
                              target.loc(*base, "set"))
        for k, v in setv.items():
            if not _num(v):
                raise ConfigError(f"{where}.set.{k}: expected a number, got {v!r}",
                                  target.loc(*base, "set", k))
    shift = inv.get("shift")
    if shift is not None:
        if not isinstance(shift, dict):
            raise ConfigError(f"{where}.shift: expected {{x: PIXELS, y: PIXELS}}",
                              target.loc(*base, "shift"))
        _unknown_keys(shift, SHIFT_KEYS, where + ".shift", base + ("shift",), target)
        for k, v in shift.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"{where}.shift.{k}: expected a whole number of pixels, "
                                  f"got {v!r}", target.loc(*base, "shift", k))
        shift = {"x": shift.get("x", 0), "y": shift.get("y", 0)}
    agree = inv.get("min_agreement", 1.0)
    if not _num(agree) or not 0 <= agree <= 1:
        raise ConfigError(f"{where}.min_agreement: expected a fraction from 0 to 1, got "
                          f"{agree!r}", target.loc(*base, "min_agreement"))
    tol = inv.get("tolerance")
    if tol is not None and task != "regression":
        raise ConfigError(f"{where}.tolerance: only for regression targets",
                          target.loc(*base, "tolerance"))
    if tol is not None and (not _num(tol) or tol < 0):
        raise ConfigError(f"{where}.tolerance: expected a number >= 0, got {tol!r}",
                          target.loc(*base, "tolerance"))
    return {"noise": float(noise) if noise is not None else None, "seed": seed, "set": setv,
            "shift": shift, "min_agreement": float(agree),
            "tolerance": float(tol) if tol is not None else 0.0}


def describe_perturbation(p):
    parts = []
    if p["noise"] is not None:
        parts.append(f"noise {p['noise']:g} (seed {p['seed']})")
    if p["set"]:
        parts.append(", ".join(f"{k} = {v:g}" for k, v in p["set"].items()))
    if p["shift"]:
        parts.append(f"a shift by x={p['shift']['x']}, y={p['shift']['y']}")
    return " and ".join(parts)


def files(target):
    """Sorted relative paths of the data files the target's specs read (not the holdout).
    A file that does not exist, or a glob matching none, is a ConfigError at its location
    (checked when specs run or the lock is written, like sources are checked when built)."""
    out = set()
    for s in parse(target):
        base = ("specs", s.index)
        if s.kind == "example" and s.params["file"]:
            out.update(_files_exist(target, s.params["file"],
                                    target.loc(*base, "example", "file")))
        if s.over and s.over != HOLDOUT:
            out.update(_files_exist(target, s.over, target.loc(*base, "over")))
    return sorted(out)

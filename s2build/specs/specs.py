"""Behaviour specs: a target's tests, run on its ONNX artifact through onnxruntime.

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

Gate metrics: accuracy and f1 (classification), mse, mae and r2 (regression), or the short name
of a user metric the target lists in `metrics:` (computed with torch, like the build does).

`parse(target)` checks the specs' contents with yaml locations; it runs inside config.load, so
this part imports only the standard library (the no-op path). `files(target)` checks that the
files the specs name exist (when specs run, or a lock is written). `run_specs(...)` (numpy and
onnxruntime, imported when called) returns one `Outcome` per spec; failures name the spec's
yaml location and, where rows are involved, their `file:line`.
"""

import difflib
import os
import re
import time

from s2build.errors import ConfigError

KINDS = ("example", "gate", "invariance")
GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>>=|<=|>|<)\s*"
                  r"(?P<bound>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
       "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
TASK_METRICS = {"classification": ("accuracy", "f1"), "regression": ("mse", "mae", "r2"),
                "multilabel": ("accuracy",)}
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


class Outcome:
    """The result of one spec: `passed`, a one-line `message` in words, `error` when the spec
    could not run at all (bad feature name, unreadable file), and `details` for machines."""

    __slots__ = ("spec", "passed", "message", "error", "seconds", "details")

    def __init__(self, spec, passed, message, error=False, seconds=0.0, details=None):
        self.spec, self.passed, self.message, self.error = spec, passed, message, error
        self.seconds, self.details = seconds, details or {}

    def as_dict(self):
        return {"target": self.spec.target, "name": self.spec.name, "kind": self.spec.kind,
                "location": self.spec.loc, "passed": self.passed, "error": self.error,
                "message": self.message, "seconds": round(self.seconds, 4),
                "details": self.details}


# --- Parsing (standard library only) -------------------------------------------------------

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
    return [os.path.normpath(pattern)]


def parse(target):
    """[Spec] of `target`, checked; raises ConfigError at the offending yaml location."""
    task = target.config["loader"].get("task", "classification")
    user_metrics = [m.rpartition(":")[2] for m in target.config["metrics"] if ":" in m]
    metrics = list(TASK_METRICS.get(task, ())) + user_metrics
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
        if isinstance(inp, dict):
            for k, v in inp.items():
                if not _num(v):
                    raise ConfigError(f"{where}.input.{k}: expected a number, got {v!r}",
                                      target.loc(*base, "input", k))
        elif not (isinstance(inp, list) and inp and all(_num(v) for v in inp)):
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


# --- Running (numpy, onnxruntime) ----------------------------------------------------------

class Artifact:
    """A target's ONNX file in an onnxruntime session, with the metadata s2build wrote."""

    def __init__(self, path):
        import json
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.meta = self.session.get_modelmeta().custom_metadata_map
        self.features = json.loads(self.meta.get("s2build.features", "[]"))
        self.classes = json.loads(self.meta.get("s2build.classes", "[]"))
        self.task = self.meta.get("s2build.task", "classification")
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape              # e.g. ['batch', 13] or ['batch', 1, 8, 8]

    def _shape(self, x):
        tail = self.input_shape[1:]
        if all(isinstance(d, int) for d in tail) and x.ndim == 2 and len(tail) != 1:
            return x.reshape((len(x), *tail))
        return x

    def outputs(self, x):
        """First output (logits or values), float32 [n, ...], computed in chunks."""
        import numpy as np
        x = np.ascontiguousarray(x, dtype=np.float32)
        chunks = [self.session.run(None, {self.input_name: self._shape(x[i:i + 4096])})[0]
                  for i in range(0, len(x), 4096)]
        return np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)

    def class_index(self, label):
        """Index of class `label` (str or int; '1.0' matches class '1'), or None."""
        label = str(label)
        if label in self.classes:
            return self.classes.index(label)
        try:
            v = float(label)
        except ValueError:
            return None
        if v.is_integer() and str(int(v)) in self.classes:
            return self.classes.index(str(int(v)))
        return None


class Rows:
    """Rows to test on: x [n, features] float32, y (class index or values; None when the
    labels do not map to the artifact's classes), and origins ('file:line')."""

    def __init__(self, x, y, origins, what):
        self.x, self.y, self.origins, self.what = x, y, origins, what


class SpecError(Exception):
    """A spec that cannot run (reported as an error outcome, not a crash)."""


class Runner:
    """Runs the specs of one target against its artifact. `inputs` are the target's current
    fingerprint inputs (for the holdout rows); `state_dir` holds the shard cache."""

    def __init__(self, target, inputs, state_dir, artifact=None):
        self.target, self.inputs, self.state_dir = target, inputs, state_dir
        self.artifact = artifact or Artifact(target.output)
        self._rows = {}

    # rows -------------------------------------------------------------------------------
    def _file_rows(self, rel):
        """(Shard, features) of one file parsed by the target's loader (shard-cached)."""
        from s2build.data.shards import ShardStore
        from s2build.engine import fingerprint
        key = ("file", rel)
        if key not in self._rows:
            path = os.path.join(self.target.root, rel)
            if not os.path.isfile(path):
                raise SpecError(f"file '{rel}' not found")
            digest = fingerprint.sha256_file(path)
            store = ShardStore(self.state_dir)
            shard, feats, _ = store.load(self.target.root, rel, digest,
                                         self.target.config["loader"])
            self._rows[key] = (shard, list(feats))
        return self._rows[key]

    def _align(self, x, feats, rel):
        """Reorder columns of `x` (named `feats`) into the artifact's feature order."""
        want = self.artifact.features
        if not want or list(feats) == list(want) or x.ndim != 2 or len(feats) != x.shape[1]:
            return x
        pos = {f: i for i, f in enumerate(feats)}
        missing = [f for f in want if f not in pos]
        if missing:
            raise SpecError(f"{rel} has no feature '{missing[0]}' (the artifact's features: "
                            f"{', '.join(want)})")
        return x[:, [pos[f] for f in want]]

    def _origin(self, rel, line):
        from s2build.data import readers
        return readers.origin(rel, line, self.target.config["loader"]["format"])

    def _labels(self, raw):
        import numpy as np
        if self.artifact.task != "classification":
            return np.asarray(raw, dtype=np.float32)
        idx = [self.artifact.class_index(v) for v in raw.tolist()]
        if any(i is None for i in idx):
            return None
        return np.asarray(idx, dtype=np.int64)

    def rows(self, over):
        import glob
        import numpy as np
        if over in self._rows:
            return self._rows[over]
        if over == HOLDOUT:
            from s2build.data import dataset as data
            from s2build.data.shards import ShardStore
            ds = data.load_dataset(self.target, self.inputs, ShardStore(self.state_dir))
            mask = ds.holdout
            origins = [o for o, h in zip(ds.origins, mask.tolist()) if h]
            rows = Rows(ds.x[mask], ds.y[mask], origins, "holdout rows")
        else:
            root = self.target.root
            rels = sorted(os.path.normpath(m) for m in glob.glob(over, root_dir=root,
                                                                  recursive=True)
                          if os.path.isfile(os.path.join(root, m))) \
                if glob.has_magic(over) else [os.path.normpath(over)]
            if not rels:
                raise SpecError(f"glob '{over}' matches no files")
            xs, ys, origins = [], [], []
            for rel in rels:
                shard, feats = self._file_rows(rel)
                xs.append(self._align(shard.x, feats, rel))
                ys.append(shard.labels)
                origins += [self._origin(rel, ln) for ln in shard.lines.tolist()]
            raw = np.concatenate(ys) if ys else np.zeros(0)
            rows = Rows(np.concatenate(xs), self._labels(raw), origins,
                        f"rows of {over}")
        self._rows[over] = rows
        return rows

    # kinds ------------------------------------------------------------------------------
    def run(self, spec):
        clock = time.perf_counter()
        try:
            passed, message, details = getattr(self, "_" + spec.kind)(spec)
            out = Outcome(spec, passed, message, details=details)
        except SpecError as e:
            out = Outcome(spec, False, f"could not run: {e}", error=True)
        except Exception as e:          # a DataError in a spec's file, onnxruntime refusing
            from s2build.errors import S2Error
            if not isinstance(e, S2Error) and not type(e).__module__.startswith("onnxruntime"):
                raise
            out = Outcome(spec, False, f"could not run: {e}", error=True)
        out.seconds = time.perf_counter() - clock
        return out

    def _predict_one(self, x):
        import numpy as np
        out = self.artifact.outputs(x[None, ...])[0]
        if self.artifact.task == "multilabel":
            return [int(v) for v in (np.ravel(out) > 0)], None, None
        if self.artifact.task == "classification":
            p = np.exp(out - out.max())
            p /= p.sum()
            k = int(out.argmax())
            return self.artifact.classes[k], float(p[k]), k
        return [float(v) for v in np.ravel(out)], None, None

    def _example(self, spec):
        import numpy as np
        p, a = spec.params, self.artifact
        if p["input"] is not None:
            inp = p["input"]
            if isinstance(inp, list):
                if a.features and len(inp) != len(a.features):
                    raise SpecError(f"input has {len(inp)} values, the artifact takes "
                                    f"{len(a.features)} features")
                x = np.asarray(inp, dtype=np.float32)
            else:
                unknown = [k for k in inp if k not in a.features]
                if unknown:
                    close = difflib.get_close_matches(unknown[0], a.features, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise SpecError(f"unknown feature '{unknown[0]}'{hint}")
                missing = [f for f in a.features if f not in inp]
                if missing:
                    raise SpecError(f"input lacks feature '{missing[0]}'"
                                    + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                    + " (give every feature by name)")
                x = np.asarray([inp[f] for f in a.features], dtype=np.float32)
            where = None
        else:
            rel = os.path.normpath(p["file"])
            shard, feats = self._file_rows(rel)
            if p["line"] is None:
                if len(shard.lines) != 1:
                    raise SpecError(f"{rel} holds {len(shard.lines)} rows; give 'line'")
                j = 0
            else:
                hits = np.nonzero(shard.lines == p["line"])[0]
                if not len(hits):
                    raise SpecError(f"{rel}:{p['line']} is not a data row")
                j = int(hits[0])
            x = self._align(shard.x[j:j + 1], feats, rel)[0]
            if p["expect"] is None:                       # the row's own label
                label = shard.labels[j]
                if a.task == "classification":
                    p = dict(p, expect=str(label))
                else:
                    vals = [float(v) for v in np.ravel(label)]
                    p = dict(p, expect=[int(v) for v in vals] if a.task == "multilabel" else vals)
            where = self._origin(rel, int(shard.lines[j])) if p["line"] is not None else rel
        pred, prob, k = self._predict_one(x)
        details = {"input": where or "inline", "prediction": pred, "expect": p["expect"]}
        at = f"{where}: " if where else ""
        if a.task == "classification":
            want = a.class_index(p["expect"])
            if want is None:
                raise SpecError(f"unknown class '{p['expect']}' (classes: "
                                f"{', '.join(a.classes)})")
            details["probability"] = prob
            if k == want:
                return True, f"{at}predicted {pred} (p={prob:.3f})", details
            return False, (f"{at}predicted {pred} (p={prob:.3f}), expected "
                           f"{a.classes[want]}"), details
        expect = p["expect"] if isinstance(p["expect"], list) else [p["expect"]]
        if a.task == "multilabel":
            if len(expect) != len(pred):
                raise SpecError(f"expect has {len(expect)} labels, the artifact outputs "
                                f"{len(pred)}")
            wrong = [i for i, (u, v) in enumerate(zip(pred, expect)) if u != v]
            if not wrong:
                return True, f"{at}all {len(pred)} outputs as expected", details
            return False, (f"{at}{len(wrong)} of {len(pred)} outputs differ from expect "
                           f"(at index {', '.join(map(str, wrong[:8]))}"
                           + (", ..." if len(wrong) > 8 else "") + ")"), details
        if len(expect) != len(pred):
            raise SpecError(f"expect has {len(expect)} values, the artifact outputs {len(pred)}")
        diff = max(abs(u - v) for u, v in zip(pred, expect))
        shown = lambda v: f"{v[0]:.4g}" if len(v) == 1 else "[" + ", ".join(f"{u:.4g}" for u in v) + "]"
        text = f"{at}predicted {shown(pred)}, expected {shown(expect)} ± {p['tolerance']:g}"
        if diff <= p["tolerance"]:
            return True, text, details
        return False, text + f" (off by {diff:.4g})", details

    def metric(self, name, out, y):
        """Metric `name` of outputs `out` against `y` (numpy; user metrics through torch)."""
        import numpy as np
        if name == "accuracy" and y.ndim == 2:          # multilabel: per output
            return float(((out > 0) == (y > 0.5)).mean())
        if name in ("accuracy", "f1"):
            pred = out.argmax(axis=-1)
            if name == "accuracy":
                return float((pred == y).mean())
            scores = []
            for c in range(out.shape[-1]):
                tp = int(((pred == c) & (y == c)).sum())
                fp = int(((pred == c) & (y != c)).sum())
                fn = int(((pred != c) & (y == c)).sum())
                if tp + fp + fn:
                    scores.append(2 * tp / (2 * tp + fp + fn))
            return sum(scores) / len(scores) if scores else 0.0
        if name in ("mse", "mae", "r2"):
            o = out.reshape(y.shape) if out.size == y.size else out
            o, y = o.astype(np.float64), y.astype(np.float64)
            if name == "mse":
                return float(((o - y) ** 2).mean())
            if name == "mae":
                return float(np.abs(o - y).mean())
            ss_tot = float(((y - y.mean()) ** 2).sum())
            return 1.0 - float(((y - o) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
        import torch
        from s2build.compile import scoring
        fns = dict(scoring.metric_fns(self.target))
        return float(fns[name](torch.from_numpy(out), torch.from_numpy(y)))

    def _gate(self, spec):
        p = spec.params
        rows = self.rows(spec.over)
        if not len(rows.x):
            raise SpecError(f"no {rows.what} to measure {p['metric']} on"
                            + ("; give 'over: FILE'" if spec.over == HOLDOUT else ""))
        if rows.y is None:
            raise SpecError(f"the labels of {spec.over} are not the artifact's classes "
                            f"({', '.join(self.artifact.classes)})")
        value = self.metric(p["metric"], self.artifact.outputs(rows.x), rows.y)
        details = {"metric": p["metric"], "value": value, "op": p["op"], "bound": p["bound"],
                   "rows": len(rows.x), "over": spec.over}
        n = f"{len(rows.x)} {rows.what}"
        if OPS[p["op"]](value, p["bound"]):
            return True, f"{p['metric']} {value:.4g} {p['op']} {p['bound']:g} ({n})", details
        return False, (f"{p['metric']} is {value:.4g}, the gate requires {p['text']} ({n})"), \
            details

    def _perturb(self, p, x):
        import numpy as np
        a = self.artifact
        shape = x.shape
        x = x.reshape(len(x), -1).astype(np.float32, copy=True)      # [n, features]
        if p["set"]:
            for f, v in p["set"].items():
                if f not in a.features:
                    close = difflib.get_close_matches(f, a.features, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise SpecError(f"unknown feature '{f}'{hint}")
                x[:, a.features.index(f)] = v
        if p["noise"] is not None:
            rng = np.random.default_rng(p["seed"])
            x += (rng.standard_normal(x.shape) * p["noise"] * x.std(axis=0)).astype(np.float32)
        if p["shift"]:
            tail = [d for d in a.input_shape[1:]]
            if len(tail) >= 2 and all(isinstance(d, int) for d in tail[-2:]):
                h, w = tail[-2], tail[-1]
            else:
                side = int(round(x.shape[1] ** 0.5))
                if side * side != x.shape[1]:
                    raise SpecError("shift needs an image input ([N, C, H, W], or N*N features)")
                h = w = side
            img = x.reshape(len(x), -1, h, w)
            out = np.zeros_like(img)
            dx, dy = p["shift"]["x"], p["shift"]["y"]
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            out[:, :, yd, xd] = img[:, :, ys, xs]
            x = out.reshape(x.shape)
        return x.reshape(shape)

    def _invariance(self, spec):
        import numpy as np
        p, a = spec.params, self.artifact
        rows = self.rows(spec.over)
        n = len(rows.x)
        if not n:
            raise SpecError(f"no {rows.what} to perturb"
                            + ("; give 'over: FILE'" if spec.over == HOLDOUT else ""))
        before = a.outputs(rows.x)
        after = a.outputs(self._perturb(p, rows.x))
        what = describe_perturbation(p)
        if a.task == "multilabel":
            cb, ca = before.reshape(n, -1) > 0, after.reshape(n, -1) > 0
            changed = np.nonzero((cb != ca).any(axis=1))[0]
            examples = [f"{rows.origins[i]} ({int((cb[i] != ca[i]).sum())} outputs)"
                        for i in changed[:3]]
            verb = "changed an output"
        elif a.task == "classification":
            cb, ca = before.argmax(axis=-1), after.argmax(axis=-1)
            changed = np.nonzero(cb != ca)[0]
            examples = [f"{rows.origins[i]} ({a.classes[cb[i]]} -> {a.classes[ca[i]]})"
                        for i in changed[:3]]
            verb = "changed class"
        else:
            d = np.abs(after.reshape(n, -1) - before.reshape(n, -1)).max(axis=1)
            changed = np.nonzero(d > p["tolerance"])[0]
            examples = [f"{rows.origins[i]} (by {d[i]:.4g})" for i in changed[:3]]
            verb = f"changed by more than {p['tolerance']:g}"
        agree = 1.0 - len(changed) / n
        details = {"rows": n, "changed": len(changed), "agreement": agree,
                   "min_agreement": p["min_agreement"], "over": spec.over,
                   "changed_rows": [rows.origins[i] for i in changed[:20]]}
        if agree >= p["min_agreement"]:
            return True, f"{n - len(changed)} of {n} {rows.what} unchanged under {what}", details
        allowed = int(np.floor((1 - p["min_agreement"]) * n + 1e-9))
        more = f", +{len(changed) - 3} more" if len(changed) > 3 else ""
        return False, (f"{len(changed)} of {n} {rows.what} {verb} under {what} (at most "
                       f"{allowed} may): " + ", ".join(examples) + more), details


def run_specs(target, inputs, state_dir, specs=None):
    """[Outcome] of `target`'s specs (default: all) on its current artifact."""
    specs = parse(target) if specs is None else specs
    if not specs:
        return []
    runner = Runner(target, inputs, state_dir)
    return [runner.run(s) for s in specs]

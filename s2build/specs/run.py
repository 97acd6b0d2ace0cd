"""Behaviour specs: running them on a target's ONNX artifact through onnxruntime.

`run_specs(target, inputs, state_dir)` (or a `Runner`, to share one opened artifact) returns one
`Outcome` per spec of s2build/specs/parse.py. Failures name the spec's yaml location and, where
rows are involved, their `file:line`. Gate metrics are computed by the functions the build's
evaluation uses (s2build/compile/metrics.py), so a gate sees the value the build recorded.
numpy and onnxruntime are imported when a spec runs.
"""

import difflib
import os
import time

from s2build.compile.artifact import Artifact
from s2build.project import schema
from s2build.specs.parse import HOLDOUT, describe_perturbation, parse

OPS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
       "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


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



class Rows:
    """Rows to test on: x [n, features] float32, y (class index or values; None when the
    labels do not map to the artifact's classes), and origins ('file:line')."""

    def __init__(self, x, y, origins, what):
        self.x, self.y, self.origins, self.what = x, y, origins, what


def _unknown_feature(name, known):
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "features: " + ", ".join(known)
    return SpecError(f"unknown feature '{name}' ({hint})")


class SpecError(Exception):
    """A spec that cannot run (reported as an error outcome, not a crash)."""


class Runner:
    """Runs the specs of one target against its artifact. `inputs` are the target's current
    fingerprint inputs (for the holdout rows); `state_dir` holds the shard cache."""

    def __init__(self, target, inputs, state_dir, artifact=None):
        self.target, self.inputs, self.state_dir = target, inputs, state_dir
        self.artifact = artifact or Artifact(target.output)
        self._rows = {}
        self._metrics = None

    # rows -------------------------------------------------------------------------------
    def _file_rows(self, rel):
        """(Block, features) of one file parsed by the target's loader (shard-cached)."""
        from s2build.data.shards import ShardStore
        from s2build.engine import fingerprint
        key = ("file", rel)
        if key not in self._rows:
            path = os.path.join(self.target.root, rel)
            if not os.path.isfile(path):
                raise SpecError(f"file '{rel}' not found")
            digest = fingerprint.sha256_file(path)
            store = ShardStore(self.state_dir)
            loader = self.target.config["loader"]
            kinds = store.file_kinds(self.target.root, rel, digest, loader) \
                if loader["format"] in schema.TABLES else None
            prep = getattr(self.artifact, "prep", None)
            if kinds is not None and prep is not None:  # the artifact's column kinds: text in
                kinds = dict(kinds, **{f: k for f, k in    # a number column is a DataError at
                                       zip(self.artifact.features, prep.kinds) if f in kinds})
            from s2build.data import tablefile
            blocks = store.blocks(self.target.root, rel, digest, loader, kinds)
            block = tablefile.merge(blocks) if blocks else None
            if block is None:
                raise SpecError(f"{rel} holds no rows")
            self._rows[key] = (block, list(block.features))
        return self._rows[key]

    def _x(self, block, rel, rows=None):
        """What the artifact takes for `block`'s rows: a RawTable (tables; columns by name) or
        the features, reordered into the artifact's feature order."""
        if block.kinds is not None:
            from s2build.data import tablefile
            raw = tablefile.raw_of(block)
            missing = [f for f in self.artifact.features if f not in raw.names]
            if missing:
                raise SpecError(f"{rel} has no column '{missing[0]}' (the artifact's columns: "
                                f"{', '.join(self.artifact.features)})")
            return raw.take(rows) if rows is not None else raw
        x = block.x if rows is None else block.x[rows]
        return self._align(x, block.features, rel)

    def _labels_of(self, block):
        """The block's labels as text (classification) or values."""
        return block.class_names() if block.label_vocab is not None else block.labels

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
            origins = ds.origins[np.flatnonzero(mask)]
            x = ds.raw.take(np.flatnonzero(mask)) if ds.raw is not None else ds.x[mask]
            rows = Rows(x, ds.y[mask], origins, "holdout rows")
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
                block, _feats = self._file_rows(rel)
                xs.append(self._x(block, rel))
                ys.append(self._labels_of(block))
                origins += [self._origin(rel, ln) for ln in block.lines.tolist()]
            raw = np.concatenate(ys) if ys else np.zeros(0)
            x = xs[0].concat(xs[1:]) if xs and hasattr(xs[0], "kinds") else np.concatenate(xs)
            rows = Rows(x, self._labels(raw), origins, f"rows of {over}")
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
        """Prediction for one row: x is a batch of one (array, RawTable or feeds)."""
        import numpy as np
        out = self.artifact.outputs(x)[0]
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
                x = np.asarray(inp, dtype=np.float32)[None]
                if a.prep is not None:
                    x = a.prep.feeds_from_values([dict(zip(a.features, inp))])
            else:
                unknown = [k for k in inp if k not in a.features]
                if unknown:
                    raise _unknown_feature(unknown[0], a.features)
                missing = [f for f in a.features if f not in inp]
                if missing:
                    raise SpecError(f"input lacks feature '{missing[0]}'"
                                    + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                                    + " (give every feature by name)")
                if a.prep is not None:
                    try:
                        x = a.prep.feeds_from_values([inp])
                    except ValueError as e:
                        raise SpecError(str(e)) from None
                else:
                    x = np.asarray([inp[f] for f in a.features], dtype=np.float32)[None]
            where = None
        else:
            rel = os.path.normpath(p["file"])
            shard, _feats = self._file_rows(rel)
            if p["line"] is None:
                if len(shard.lines) != 1:
                    raise SpecError(f"{rel} holds {len(shard.lines)} rows; give 'line'")
                j = 0
            else:
                hits = np.nonzero(shard.lines == p["line"])[0]
                if not len(hits):
                    lines = shard.lines.tolist() or [0]
                    what = "the header" if p["line"] == 1 < min(lines) else "not a data row"
                    raise SpecError(f"{rel}:{p['line']} is {what} (its rows are at lines "
                                    f"{min(lines)} to {max(lines)})")
                j = int(hits[0])
            x = self._x(shard, rel, slice(j, j + 1))
            if p["expect"] is None:                       # the row's own label
                label = self._labels_of(shard)[j]
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
        """Metric `name` of artifact outputs `out` against labels `y` (numpy): the function the
        build's evaluation calls (a built-in, or a user metric the target lists)."""
        if self._metrics is None:
            from s2build.compile import metrics
            self._metrics = dict(metrics.functions(self.target))
        fn = self._metrics.get(name)
        if fn is None:                   # a built-in the target does not list
            from s2build.project import registry
            fn = registry.implementation(registry.METRICS[name])
        return fn(out, y)

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
        if hasattr(x, "kinds"):                 # a table: raw columns
            if p["shift"]:
                raise SpecError("shift needs an image input; this artifact takes table columns")
            unknown = [f for f in (p["set"] or {}) if f not in x.names]
            if unknown:
                raise _unknown_feature(unknown[0], x.names)
            return x.perturbed(p["set"], p["noise"], p["seed"])
        shape = x.shape
        x = x.reshape(len(x), -1).astype(np.float32, copy=True)      # [n, features]
        if p["set"]:
            for f, v in p["set"].items():
                if f not in a.features:
                    raise _unknown_feature(f, a.features)
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

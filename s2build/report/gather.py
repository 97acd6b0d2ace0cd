"""What `s2build report` shows, gathered from what the builds recorded (report/html.py draws it).

`collect(project, names, reporter)` builds what is stale (as `test` does), then returns a plain
document (dicts, lists, str and numbers; no numpy), one entry per target:

    name, task, built (bool), why_not       no build: the reason in words (build failed, stale)
    facts                                   the sidecar NAME.onnx.json (metrics, history,
                                            timings, rows, verification, build_key, ...)
    artifact                                path, size, sha256, inputs, outputs, build key,
                                            provenance (the ONNX metadata_props)
    confusion                               classification: classes, matrix[true][pred],
                                            precision, recall, rows (the holdout rows)
    regression                              true/pred per output column (at most MAX_POINTS)
    specs                                   [{name, passed, error, message, location}]
    lint                                    shown (the strongest of each check, file order, a
                                            csv row's values, an image's thumbnail), left
                                            {check: n}, counts, error
    blame, seeds, builds                    report/views.py: blame queries over the holdout,
                                            the saved seed report, the history of builds

The holdout predictions are the final network's logits that every build records in its
cache entry (`dynamics.npz`, data/dataset.py load_dynamics); a build without dynamics (a
streamed table) runs the artifact on the holdout rows through the spec runner instead.
A build that fails is not raised: `doc["build_error"]` holds its exit code and message, and
the targets without a build say so. Image thumbnails (report/thumbs.py) are data URIs, at
most MAX_THUMBS per target. numpy and onnxruntime load inside the functions.
"""

import os

from s2build import errors
from s2build.report import views
from s2build.report.views import row_values

MAX_POINTS = 2000          # scatter points per output column (an even stride over the holdout)
LINT_PER_CHECK = 5         # lint diagnostics shown per check (the strongest; errors always)
REGRESSION_COLUMNS = 4     # scatter charts per target at most


def collect(project, names, reporter, build=True, outcomes=None, mode="release",
            build_error=None):
    """The report document for `names` (default every target). `build`: build what is stale
    first; `outcomes`: spec outcomes already run (ci: a list; watch: {target: list}, a target
    it lacks runs its specs here), else the specs run here; `mode`: the builds the page
    describes (watch: dev); `build_error`: {exit_code, message} of a build that failed."""
    from s2build.engine import runner
    from s2build.project import graph
    from s2build.specs import parse as specparse
    names = list(names) if names else list(project.targets)
    graph.order(project, names)                         # unknown names: did-you-mean error
    doc = {"project": os.path.basename(project.root.rstrip(os.sep)) or project.root,
           "build_error": build_error, "targets": []}
    if build:
        for n in names:
            specparse.files(project.targets[n])         # a spec's missing file: exit 3
        try:
            runner.build(project, names, reporter, command="report")
        except (errors.DataError, errors.BuildError, errors.VerificationError) as e:
            doc["build_error"] = {"exit_code": e.exit_code, "message": str(e)}
        finally:
            reporter.finish()
    steps, state = runner.status(project, names, mode=mode)
    steps = {s.target.name: s for s in steps}
    if isinstance(outcomes, list):
        outcomes = {n: [o for o in outcomes if o.spec.target == n] for n in names}
    for n in names:
        mine = None if outcomes is None else outcomes.get(n)
        doc["targets"].append(target_entry(project, steps[n], state, doc["build_error"], mine))
    return doc


def target_entry(project, step, state, build_error, outcomes=None):
    """One target's part of the document (see the module docstring)."""
    target = step.target
    out = {"name": target.name, "task": target.config["loader"].get("task", "classification"),
           "output": target.config["output"], "built": False, "why_not": None, "facts": {},
           "artifact": None, "confusion": None, "regression": None, "specs": [], "lint": None,
           "blame": None, "seeds": None, "builds": None, "thumbnails": 0}
    if step.action != "up-to-date" or not os.path.isfile(target.output):
        why = step.reasons[0].text if step.reasons else "not built"
        if build_error:
            why = f"the build failed (exit {build_error['exit_code']}): {build_error['message']}"
        out["why_not"] = f"no build of the current sources: {why}"
        return out
    from s2build.compile.artifact import Artifact, ArtifactError
    out["built"] = True
    out["facts"] = _sidecar(target.output)
    try:
        art = Artifact(target.output)
    except (OSError, ArtifactError) as e:
        out["built"], out["why_not"] = False, f"{target.config['output']}: unreadable ({e})"
        return out
    out["artifact"] = {"path": target.config["output"], "size": len(art.data),
                       "sha256": out["facts"].get("artifact_sha256")
                       or (state.targets.get(target.name) or {}).get("artifact_sha256"),
                       "build_key": art.build_key,
                       "inputs": [[n, e, list(s)] for n, e, s in art.inputs],
                       "outputs": list(art.output_names), "provenance": dict(art.meta)}
    from s2build.report.thumbs import Thumbs
    thumbs = Thumbs(target)
    dyn = _dynamics(project, step.inputs.key)
    out.update(_holdout(target, step, project, art, dyn, out["task"]))
    out["specs"] = [_spec_dict(o) for o in (outcomes if outcomes is not None
                                             else _run_specs(project, target, step, art))]
    out["lint"] = _lint(project, target, step, dyn, thumbs)
    out["blame"] = views.blame(target, dyn, thumbs)
    release = getattr(step.inputs, "release", None)     # a dev build: its recipe's release key
    out["seeds"] = views.seeds(project, target, getattr(release, "key", step.inputs.key),
                               thumbs)
    out["builds"] = views.builds(out["facts"])
    out["thumbnails"] = thumbs.shown
    return out


def _sidecar(path):
    """The sidecar's facts; {} when it is missing or not JSON (the report still draws)."""
    import json
    try:
        with open(path + ".json", encoding="utf-8") as f:
            facts = json.load(f)
        return facts if isinstance(facts, dict) else {}
    except (OSError, ValueError):
        return {}


def _dynamics(project, key):
    from s2build.data.dataset import load_dynamics
    from s2build.store.local import Cache
    path = os.path.join(Cache(project.state_dir).entry_dir(key), "dynamics.npz")
    try:
        return load_dynamics(path) if os.path.isfile(path) else None
    except (OSError, ValueError, KeyError):
        return None


def history(facts):
    """The training loss per epoch from a sidecar: [float] (an entry that is a dict gives its
    `loss`; anything else is left out)."""
    out = []
    for v in facts.get("history") or []:
        if isinstance(v, dict):
            v = v.get("loss")
        if _real(v):
            out.append(float(v))
    return out


def holdout_history(facts):
    """The sidecar's per-epoch holdout curve (compile/curve.py) as {"loss": [float|None],
    "metric": name|None, "values": [float|None], "rows", "of"}, or None."""
    h = facts.get("holdout_history")
    if not isinstance(h, dict) or not isinstance(h.get("loss"), list):
        return None
    clean = lambda vs: [float(v) if _real(v) else None for v in vs]   # noqa: E731
    values = h.get("values") if isinstance(h.get("values"), list) else []
    return {"loss": clean(h["loss"]), "metric": h.get("metric") if values else None,
            "values": clean(values), "rows": h.get("rows"), "of": h.get("of")}


def _real(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# --- Holdout predictions -------------------------------------------------------------------

def _holdout(target, step, project, art, dyn, task):
    """{"confusion": ...} or {"regression": ...} over the holdout rows, or {} (multilabel, or
    no holdout)."""
    import numpy as np
    if dyn is not None and "logits" in dyn and "holdout" in dyn:
        hold = np.flatnonzero(dyn["holdout"])
        out, y = np.asarray(dyn["logits"])[hold], np.asarray(dyn["y"])[hold]
        source = "the final network's logits recorded by the build (dynamics.npz)"
    else:
        from s2build.specs import parse as specparse
        from s2build.specs import run as specrun
        rows = specrun.Runner(target, step.inputs, project.state_dir, artifact=art).rows(
            specparse.HOLDOUT)
        if rows.y is None:
            return {}
        out, y = art.outputs(rows.x), np.asarray(rows.y)
        source = "the artifact run through onnxruntime on the holdout rows"
    if len(y) == 0:
        return {}
    if task == "classification":
        classes = [str(c) for c in (art.classes or (dyn or {}).get("classes", []))]
        return {"confusion": confusion(y, out, classes, source)}
    if task == "regression":
        out = out.reshape(len(out), -1)
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        idx = np.unique(np.linspace(0, len(y) - 1, min(len(y), MAX_POINTS)).astype(int))
        label = target.config["loader"].get("label")
        names = label if isinstance(label, list) else [label] if y.shape[1] == 1 and label else []
        cols = [{"name": str(names[j]) if j < len(names) else f"output {j}",
                 "true": [float(v) for v in y[idx, j]], "pred": [float(v) for v in out[idx, j]]}
                for j in range(min(y.shape[1], REGRESSION_COLUMNS))]
        return {"regression": {"rows": int(len(y)), "shown": int(len(idx)), "columns": cols,
                               "source": source}}
    return {}


def confusion(y, logits, classes, source=""):
    """{"classes", "matrix" (rows: true class, columns: predicted), "precision", "recall"
    (None where undefined), "rows", "source"} from class indices `y` [n] and logits [n, k]
    (k = 1: a positive logit is class 1)."""
    import numpy as np
    logits = np.asarray(logits).reshape(len(logits), -1)
    pred = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    y = np.asarray(y).astype(int)
    k = max(len(classes), int(pred.max(initial=0)) + 1, int(y.max(initial=0)) + 1)
    m = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    col, row, diag = m.sum(axis=0), m.sum(axis=1), np.diag(m)
    names = list(classes) + [str(i) for i in range(len(classes), k)]
    return {"classes": names, "matrix": m.tolist(),
            "precision": [float(d / c) if c else None for d, c in zip(diag, col)],
            "recall": [float(d / r) if r else None for d, r in zip(diag, row)],
            "rows": int(len(y)), "source": source}


# --- Specs and lint ------------------------------------------------------------------------

def _run_specs(project, target, step, art):
    """The target's spec outcomes on its artifact, as `s2build test` runs them."""
    from s2build.specs import parse as specparse
    from s2build.specs import run as specrun
    parsed = specparse.parse(target)
    if not parsed:
        return []
    spec_runner = specrun.Runner(target, step.inputs, project.state_dir, artifact=art)
    return [spec_runner.run(s) for s in parsed]


def _spec_dict(o):
    return {"name": o.spec.name, "id": o.spec.id, "passed": bool(o.passed),
            "error": bool(o.error), "message": o.message, "location": o.spec.loc}


def _lint(project, target, step, dyn, thumbs):
    """Lint's diagnostics of one built target (lint.py's checks, recorded dynamics reused),
    the strongest LINT_PER_CHECK of each check in file order, with a csv row's cells or an
    image's thumbnail; `error` when the data does not load."""
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.debug import budget, lint
    inputs = step.inputs
    try:
        diags = lint.scan_nonfinite(target, list(inputs.sources) + list(inputs.holdout))
        ds = data.load_dataset(target, inputs, ShardStore(project.state_dir))
        diags += lint.run(target, ds, dyn, target.loc("sources") or target.name)
    except errors.DataError as e:
        return {"shown": [], "left": {}, "counts": {}, "error": str(e)}
    diags = lint.sort(diags)
    shown, left = budget.select(diags, LINT_PER_CHECK)
    counts = {sev: sum(d.severity == sev for d in diags) for sev in lint.SEVERITIES}
    rows = row_values(target, [d.origin for d in shown])
    return {"shown": [dict(d.as_dict(), values=rows.get(d.origin), thumb=thumbs(d.origin))
                      for d in shown],
            "left": {str(k): int(v) for k, v in dict(left).items()} if left else {},
            "counts": counts, "error": None}


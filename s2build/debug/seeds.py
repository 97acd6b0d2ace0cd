"""Seed variance: build a target under K seeds and report what flips between them.

Variant i is the target with `train.seed` = seed + i and output
`build/seeds/NAME.seedS.onnx`; it is an ordinary target for the runner, so each variant is
fingerprinted, cached and restored like any build (the seed is part of the build key).

The report (`compare`): the holdout error rate of each seed, the rows whose prediction differs
between seeds (with their origins), and the disagreement rate beside the mean error rate: when
disagreement is comparable to error, which rows a model gets right is largely luck.
`spec_pass_rates` runs the target's specs on each variant's own artifact.

`save` keeps the last report of each target, for `s2build report` (which never builds seeds
itself), in `.s2build/seeds/NAME.json` (written atomically; a file that is missing, corrupt
or of another version reads as no seed run):

    {"version": 1, "target": NAME, "at": time, "n": K, "keys": {seed: build key},
     "report": compare()'s dict + "specs", its flipping_rows cut to MAX_SAVED_FLIPS,
               "flipping": how many rows flipped}
"""

import copy
import json
import os
import time

import numpy as np

from s2build.project.config import Project, Target

RESULT_VERSION = 1
MAX_SAVED_FLIPS = 200      # flipping rows kept in the saved report (their count is kept)


def variants(target, k):
    """K Targets differing from `target` only in seed and output path."""
    out = []
    base = target.config["train"]["seed"]
    for i in range(k):
        cfg = copy.deepcopy(target.config)
        cfg["train"]["seed"] = base + i
        stem = os.path.splitext(os.path.basename(target.config["output"]))[0]
        cfg["output"] = os.path.join(os.path.dirname(target.config["output"]) or ".", "seeds",
                                     f"{stem}.seed{base + i}.onnx")
        out.append(Target(f"{target.name}.seed{base + i}", cfg, target.locs, target.root))
    return out


def _sub_project(project, vs):
    sub = Project(project.path, project.root)
    sub.targets = dict(project.targets)
    for v in vs:
        sub.targets[v.name] = v
    return sub


def build(project, target, k, reporter):
    """Build the K variants (dependencies included); returns [(variant, build key)]."""
    from s2build.engine import runner
    vs = variants(target, k)
    sub = _sub_project(project, vs)
    runner.build(sub, [v.name for v in vs], reporter, command="seeds")
    steps, _state = runner.status(sub, [v.name for v in vs])
    keys = {s.target.name: s.inputs.key for s in steps}
    return [(v, keys[v.name]) for v in vs]


def load_dynamics(project, key):
    from s2build.store.local import Cache
    path = os.path.join(Cache(project.state_dir).entry_dir(key), "dynamics.npz")
    from s2build.data.dataset import load_dynamics
    return load_dynamics(path)


def compare(dyns, seeds):
    """Holdout predictions per seed -> report dict (classification targets)."""
    first = dyns[0]
    hold = np.flatnonzero(first["holdout"])
    y = first["y"][hold]
    preds = np.stack([d["logits"][hold].argmax(axis=1) for d in dyns])      # [k, n_hold]
    errors = (preds != y).mean(axis=1)
    flips = np.flatnonzero((preds != preds[0]).any(axis=0))
    classes = [str(c) for c in first["classes"]]
    return {
        "seeds": seeds,
        "holdout_rows": int(len(hold)),
        "error_rate": {str(s): float(e) for s, e in zip(seeds, errors)},
        "mean_error_rate": float(errors.mean()),
        "disagreement_rate": float(len(flips) / max(1, len(hold))),
        "flipping_rows": [{"origin": str(first["origins"][hold[j]]),
                           "label": classes[int(y[j])],
                           "predictions": {str(s): classes[int(p)] for s, p in zip(seeds, preds[:, j])}}
                          for j in flips],
    }


def spec_pass_rates(project, vs):
    """{spec name: {passed, seeds, rate}}: each variant's specs run on its own artifact (the
    variants must be built). Empty when the target has no specs."""
    from s2build.engine import runner
    from s2build.specs import run as specs
    if not vs or not vs[0].config["specs"]:
        return {}
    steps, _state = runner.status(_sub_project(project, vs), [v.name for v in vs])
    by_name = {s.target.name: s for s in steps}
    passed = {}
    for v in vs:
        step = by_name[v.name]
        for o in specs.run_specs(v, step.inputs, project.state_dir):
            passed[o.spec.name] = passed.get(o.spec.name, 0) + bool(o.passed)
    return {name: {"passed": n, "seeds": len(vs), "rate": n / len(vs)}
            for name, n in passed.items()}


def result_path(project, name):
    return os.path.join(project.state_dir, "seeds", f"{name}.json")


def save(project, target, rep, built):
    """Keep `rep` (compare() + "specs") of the variants `built` [(variant, key)] for the
    report; returns the path."""
    from s2build import atomic
    flips = rep["flipping_rows"]
    doc = {"version": RESULT_VERSION, "target": target.name,
           "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n": len(built),
           "keys": {str(v.config["train"]["seed"]): key for v, key in built},
           "report": dict(rep, flipping_rows=flips[:MAX_SAVED_FLIPS], flipping=len(flips))}
    path = result_path(project, target.name)
    atomic.write_text(path, json.dumps(doc, sort_keys=True, indent=1))
    return path


def load_result(project, name):
    """The saved seed report of target `name` (see the module docstring), or None."""
    try:
        with open(result_path(project, name), "rb") as f:
            doc = json.loads(f.read())
        if doc.get("version") != RESULT_VERSION or doc.get("target") != name \
                or not isinstance(doc.get("report"), dict) or not isinstance(doc.get("keys"), dict):
            return None
        return doc
    except (OSError, ValueError, AttributeError, RecursionError):
        return None

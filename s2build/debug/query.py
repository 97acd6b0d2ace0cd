"""What `s2build blame` asks: a query (a dataset row, a file of inputs, or an example spec's
input), the recorded training dynamics and the final network, and the stability of the answer
over seeds. The attribution itself is in blame.py.

A query is `(row, x, shown)`: the dataset row index when the query is a training or holdout row
(exact TracIn with its own recorded factors), else None and `x`, a float32 array
[1, *input_shape] run through the final network.
"""

import os

from s2build import errors


def entry_file(project, key, name):
    from s2build.store.local import Cache
    return os.path.join(Cache(project.state_dir).entry_dir(key), name)


def dynamics(project, name, key):
    """The dynamics.npz of build `key` as a dict of arrays; BuildError when it is missing."""
    path = entry_file(project, key, "dynamics.npz")
    if not os.path.exists(path):
        raise errors.BuildError(f"no training dynamics recorded for {name}",
                                hint=f"rebuild it: s2build clean {name} && s2build build")
    from s2build.data.dataset import load_dynamics
    return load_dynamics(path)


def input_shape(output):
    """The artifact's input shape without the batch dimension, from its metadata."""
    from s2build.compile.artifact import Artifact
    return Artifact(output).json("s2build.input_shape")


def query(project, target, dyn, text):
    """(row or None, x or None, shown name) of `--input TEXT`: a dataset origin, a file of
    inputs, or FILE:LINE of such a file."""
    origins = [str(o) for o in dyn["origins"]]
    if text in origins:
        return origins.index(text), None, text
    from s2build.debug import predict
    rel, _, line = text.rpartition(":") if text.rpartition(":")[2].isdigit() else (text, "", "")
    path = os.path.join(project.root, rel)
    if not os.path.isfile(path):
        raise errors.UsageError(f"--input {text}: neither a row of the dataset nor a file",
                                hint="give an origin such as data/a.csv:12, or a file of inputs")
    art = predict._open(target)
    if art.prep is not None:                    # a table: raw columns -> the network's input
        found, raw = predict._table_rows(art, path)
        want = f"{os.path.relpath(path)}:{line}" if line else None
        hits = [i for i, o in enumerate(found) if want is None or o == want]
        if not hits:
            raise errors.UsageError(f"--input {text}: no such row")
        return None, art.prep.transform(raw.take([hits[0]])), found[hits[0]]
    rows = predict.rows_for_target(target, path)
    if line:
        rows = [r for r in rows if r[0] == f"{os.path.relpath(path)}:{line}"]
    if not rows:
        raise errors.UsageError(f"--input {text}: no such row")
    import numpy as np
    x = np.asarray(rows[0][1], dtype=np.float32).reshape([1] + input_shape(target.output))
    return None, x, rows[0][0]


def example_spec(target, name):
    """The parsed example spec `name` of `target`; UsageError naming the examples otherwise.
    Standard library only: callable before anything is built."""
    import difflib

    from s2build.specs import parse
    parsed = parse.parse(target)
    found = [s for s in parsed if s.name == name and s.kind == "example"]
    if not found:
        examples = [s.name for s in parsed if s.kind == "example"]
        close = difflib.get_close_matches(name, examples, n=1)
        raise errors.UsageError(f"--spec {name}: target '{target.name}' has no example spec "
                                f"of that name",
                                hint=f"did you mean '{close[0]}'?" if close else
                                "example specs: " + (", ".join(examples) or "none"))
    return found[0]


def spec_query(project, target, dyn, name):
    """The query of example spec `name`: its file row's origin (row of the dataset, or a row
    run through the final network), or its inline input as x (shown as `spec 'NAME'`)."""
    import numpy as np
    p = example_spec(target, name).params
    if p["file"] is not None:
        rel = os.path.normpath(p["file"])
        if p["line"] is None:
            return query(project, target, dyn, rel)
        from s2build.data import readers
        origin = readers.origin(rel, p["line"], target.config["loader"]["format"])
        return query(project, target, dyn, origin if origin in set(map(str, dyn["origins"]))
                     else f"{rel}:{p['line']}")
    from s2build.compile.artifact import Artifact
    art = Artifact(target.output)
    feats = art.features
    inp = p["input"]
    if art.prep is not None:
        values = dict(zip(feats, inp)) if isinstance(inp, list) else inp
        return None, art.prep.transform(art.prep.raw_from_values([values])), f"spec '{name}'"
    values = inp if isinstance(inp, list) else [inp[f] for f in feats]
    x = np.asarray(values, dtype=np.float32).reshape([1] + input_shape(target.output))
    return None, x, f"spec '{name}'"


def final_module(project, target, key, dyn):
    """The trained network of build `key` (weights.pt of its cache entry), in eval mode."""
    import torch

    from s2build.compile import models
    shape = tuple(input_shape(target.output))
    net = models.build(target, shape, dyn["logits"].shape[1], torch.zeros((2,) + shape))
    net.load_state_dict(torch.load(entry_file(project, key, "weights.pt"), weights_only=True))
    return net.eval()


def run(project, target, key, text=None, spec=None, k=10, seeds=0, reporter=None):
    """The blame report of one query as a dict (query, prediction, probability, exact, rows,
    and with `seeds` K > 0: the top-k overlap over K seed variants). Also returns the
    dynamics and the row index, for the caller's wording."""
    from s2build.debug import blame
    dyn = dynamics(project, target.name, key)
    if spec is not None:
        row, x, shown = spec_query(project, target, dyn, spec)
    else:
        row, x, shown = query(project, target, dyn, text)
    module = final_module(project, target, key, dyn) if row is None else None
    try:
        top, pred, p, exact = blame.blame(dyn, [str(o) for o in dyn["origins"]], row, module,
                                          x, k)
    except ValueError as e:
        raise errors.BuildError(str(e)) from None
    classes = [str(c) for c in dyn["classes"]]
    result = {"query": shown, "prediction": classes[pred], "probability": p, "exact": exact,
              "rows": [{"origin": o, "label": classes[lb], "influence": sc} for o, lb, sc in top]}
    if seeds:
        result["seeds"] = seed_overlap(project, target, row, x, k, seeds, reporter)
    return result, dyn, row


def seed_overlap(project, target, row, x, k, n_seeds, reporter):
    """{k, mean_overlap, in_every_seed}: how stable the top-k rows are over `n_seeds` seeds."""
    from s2build.debug import blame, seeds
    per_seed = []
    for variant, key in seeds.build(project, target, n_seeds, reporter):
        vd = seeds.load_dynamics(project, key)
        vmod = final_module(project, variant, key, vd) if row is None else None
        vt, _p, _pp, _e = blame.blame(vd, [str(o) for o in vd["origins"]], row, vmod, x, k)
        per_seed.append([o for o, _l, _s in vt])
    sets = [set(t) for t in per_seed]
    pairs = [len(a & b) / k for i, a in enumerate(sets) for b in sets[i + 1:]]
    return {"k": n_seeds, "mean_overlap": sum(pairs) / len(pairs) if pairs else 1.0,
            "in_every_seed": sorted(set.intersection(*sets)) if sets else []}

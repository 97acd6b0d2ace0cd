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


def dynamics(project, name, key, task=None):
    """The dynamics.npz of build `key` as a dict of arrays (with "task" when given); BuildError
    when it is missing."""
    path = entry_file(project, key, "dynamics.npz")
    if not os.path.exists(path):
        raise errors.BuildError(f"no training dynamics recorded for {name}",
                                hint=f"rebuild it: s2build clean {name} && s2build build")
    from s2build.data.dataset import load_dynamics
    dyn = load_dynamics(path)
    if task is not None:
        dyn["task"] = task
    return dyn


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


def gate_spec(target, name):
    """The parsed gate spec `name` of `target`, or None when it has no gate of that name."""
    from s2build.specs import parse
    found = [s for s in parse.parse(target) if s.name == name and s.kind == "gate"]
    return found[0] if found else None


def example_spec(target, name):
    """The parsed example spec `name` of `target`; UsageError naming the examples otherwise.
    Standard library only: callable before anything is built."""
    import difflib

    from s2build.specs import parse
    parsed = parse.parse(target)
    found = [s for s in parsed if s.name == name and s.kind == "example"]
    if not found:
        examples = [s.name for s in parsed if s.kind in ("example", "gate")]
        close = difflib.get_close_matches(name, examples, n=1)
        raise errors.UsageError(f"--spec {name}: target '{target.name}' has no example or "
                                f"gate spec of that name",
                                hint=f"did you mean '{close[0]}'?" if close else
                                "example and gate specs: " + (", ".join(examples) or "none"))
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


def output_names(target, dyn):
    """Names of the network's outputs: class names, or the label column(s) of a regression."""
    if len(dyn["classes"]):
        return [str(c) for c in dyn["classes"]]
    label = target.config["loader"].get("label")
    names = label if isinstance(label, list) else [label] if label else []
    k = dyn["logits"].shape[1]
    return [str(n) for n in names] if len(names) == k else [f"output {j}" for j in range(k)]


def output_index(target, dyn, name):
    """Index of regression output `name` (None: the first); UsageError naming the outputs."""
    names = output_names(target, dyn)
    if name is None:
        return 0
    if name not in names:
        raise errors.UsageError(f"--output {name}: '{target.name}' has no output of that name",
                                hint="outputs: " + ", ".join(names))
    return names.index(name)


def _prediction(task, z, names, output):
    import numpy as np
    if task == "classification":
        p = np.exp(z - z.max())
        p /= p.sum()
        return names[int(p.argmax())], float(p.max())
    if task == "multilabel":
        return [n for n, v in zip(names, z) if v > 0], None
    return float(z[output]), None


def run(project, target, key, text=None, spec=None, k=10, seeds=0, reporter=None, output=None):
    """The blame report of one query as a dict (task, query, prediction, probability
    (classification), output (regression), exact, rows, lowering (regression), and with
    `seeds` K > 0: the top-k overlap over K seed variants). Also returns the dynamics and the
    row index, for the caller's wording."""
    from s2build.debug import blame
    dyn = dynamics(project, target.name, key, target.config["loader"]["task"])
    out_i = output_index(target, dyn, output)
    if spec is not None:
        row, x, shown = spec_query(project, target, dyn, spec)
    else:
        row, x, shown = query(project, target, dyn, text)
    module = final_module(project, target, key, dyn) if row is None else None
    try:
        found = blame.explain(dyn, [str(o) for o in dyn["origins"]], row, module, x, k, out_i)
    except ValueError as e:
        raise errors.BuildError(str(e)) from None
    names = output_names(target, dyn)
    pred, prob = _prediction(found["task"], found["outputs"], names, out_i)
    shown_rows = lambda rows: [{"origin": o, "label": label_text(dyn, names, i),  # noqa: E731
                                "influence": sc} for o, i, sc in rows]
    result = {"task": found["task"], "query": shown, "prediction": pred, "probability": prob,
              "exact": found["exact"], "rows": shown_rows(found["rows"])}
    if found["task"] == "regression":
        result["output"] = names[out_i]
        result["lowering"] = shown_rows(found["lowering"])
    if seeds:
        result["seeds"] = seed_overlap(project, target, row, x, k, seeds, reporter, out_i)
    return result, dyn, row


def label_text(dyn, names, i):
    """Row i's label as words: a class name, the labels that are on, or the value(s)."""
    y = dyn["y"][i]
    if y.ndim == 0:
        return names[int(y)]
    if str(dyn.get("task")) == "multilabel" or len(dyn["classes"]):
        return "[" + ", ".join(n for n, v in zip(names, y) if v > 0.5) + "]"
    return ", ".join(f"{v:.4g}" for v in y.tolist())


def gate(project, target, key, name, k=10):
    """Blame of gate spec `name`: the holdout rows it counts against and the training rows
    that most raised their loss ({gate, failing: [origin], rows: [{origin, label, harm,
    top_for}]}); BuildError without recorded factors."""
    import numpy as np

    from s2build.debug import blame
    dyn = dynamics(project, target.name, key, target.config["loader"]["task"])
    origins = [str(o) for o in dyn["origins"]]
    try:
        blame.check(dyn, len(origins))
    except ValueError as e:
        raise errors.BuildError(str(e)) from None
    bad = blame.failing_rows(dyn)
    total, tops = blame.harm(dyn, bad)
    names = output_names(target, dyn)
    train_rows = dyn["train_rows"]
    order = [i for i in np.argsort(-total)[:k]] if len(bad) else []
    return {"gate": name, "task": blame.task_of(dyn), "failing": [origins[q] for q in bad],
            "rows": [{"origin": origins[train_rows[i]],
                      "label": label_text(dyn, names, train_rows[i]),
                      "harm": float(total[i]), "top_for": int(tops[i])} for i in order]}


def seed_overlap(project, target, row, x, k, n_seeds, reporter, output=0):
    """{k, mean_overlap, in_every_seed}: how stable the top-k rows are over `n_seeds` seeds."""
    from s2build.debug import blame, seeds
    per_seed = []
    for variant, key in seeds.build(project, target, n_seeds, reporter):
        vd = seeds.load_dynamics(project, key)
        vd["task"] = target.config["loader"]["task"]
        vmod = final_module(project, variant, key, vd) if row is None else None
        vt = blame.explain(vd, [str(o) for o in vd["origins"]], row, vmod, x, k, output)
        per_seed.append([o for o, _i, _s in vt["rows"]])
    sets = [set(t) for t in per_seed]
    pairs = [len(a & b) / k for i, a in enumerate(sets) for b in sets[i + 1:]]
    return {"k": n_seeds, "mean_overlap": sum(pairs) / len(pairs) if pairs else 1.0,
            "in_every_seed": sorted(set.intersection(*sets)) if sets else []}

"""The debugger's views of one built target for `s2build report` (report/gather.py puts them
in the document, report/sections.py draws them), from what was recorded: nothing is trained.

    blame(target, dyn, thumbs)          a few holdout queries (the rows the network gets wrong,
                                        most confidently wrong first, then the ones it is least
                                        sure of; at most QUERIES), each with its TOP proponents
                                        by last-layer TracIn (debug/blame.py) over the recorded
                                        gradient factors
    seeds(project, target, key, thumbs) the last `s2build seeds` report of the target
                                        (debug/seeds.py saves it), or how to get one
    builds(facts)                       the sidecar's history of builds (engine/record.py
                                        builds) and the metric drawn over them
    row_values(target, origins)         a csv row's cells, for rows of a table

A row of a view is a dict with `origin`, `label`, ... and, where they exist, `thumb` (a data
URI: report/thumbs.py) and `values` (a csv row's [[column, cell]]). numpy loads inside the
functions.
"""

import csv
import os

QUERIES = 3                # blame queries per target
TOP = 5                    # training rows shown per query
SEED_ROWS = 20             # flipping rows shown from a seed report
SEEDS_HINT = "s2build seeds {name} -n 5"


def blame(target, dyn, thumbs):
    """{"queries": [...], "note": why there are none (or None), "checkpoints", "wrong",
    "holdout"}; a query: {origin, label, prediction, probability, why, thumb, values, rows:
    [{origin, label, influence, thumb, values}]}."""
    out = {"queries": [], "note": None, "checkpoints": 0, "wrong": 0, "holdout": 0}
    if target.config["loader"].get("task", "classification") != "classification":
        return dict(out, note="blame explains classification targets only")
    if dyn is None or "logits" not in dyn:
        return dict(out, note="this build recorded no training dynamics (a streamed table)")
    import numpy as np

    from s2build.debug import blame as attribution
    origins = [str(o) for o in dyn["origins"]]
    try:
        attribution.check(dyn, len(origins))
    except ValueError as e:
        return dict(out, note=str(e))
    hold = np.flatnonzero(dyn["holdout"])
    z = np.asarray(dyn["logits"], dtype=np.float64)[hold]
    if not len(hold) or z.ndim != 2 or z.shape[1] < 2:
        return dict(out, note="no holdout rows to ask about" if not len(hold) else
                    "blame needs one output per class")
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y, pred = np.asarray(dyn["y"])[hold].astype(int), p.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(p[wrong, y[wrong]], kind="stable")]        # surest mistake first
    right = np.flatnonzero(pred == y)
    right = right[np.argsort(p[right].max(axis=1), kind="stable")]      # least sure first
    picks = [(j, "wrong") for j in wrong[:QUERIES]] + \
        [(j, "least sure") for j in right[:max(0, QUERIES - len(wrong))]]
    classes = [str(c) for c in dyn["classes"]]
    name = lambda i: classes[i] if 0 <= i < len(classes) else str(i)   # noqa: E731
    for j, why in picks:
        row = int(hold[j])
        top, qpred, prob, _exact = attribution.blame(dyn, origins, query_row=row, k=TOP)
        out["queries"].append({
            "origin": origins[row], "label": name(int(y[j])), "prediction": name(qpred),
            "probability": prob, "why": why, "thumb": thumbs(origins[row]),
            "rows": [{"origin": o, "label": name(lb), "influence": sc, "thumb": thumbs(o)}
                     for o, lb, sc in top]})
    _add_values(target, [q for q in out["queries"]] + [r for q in out["queries"]
                                                       for r in q["rows"]])
    return dict(out, checkpoints=int(len(dyn["ckpt_lr"])), wrong=int(len(wrong)),
                holdout=int(len(hold)))


def seeds(project, target, key, thumbs):
    """{"saved": the seed report or None, "current": whether its seed of this target's recipe
    has the build key `key`, "hint": the command that makes one, "rows": the flipping rows
    shown (at most SEED_ROWS, with thumb and values), "flipping": how many flipped}."""
    from s2build.debug import seeds as seedrun
    hint = SEEDS_HINT.format(name=target.name)
    if target.config["loader"].get("task", "classification") != "classification":
        return {"saved": None, "hint": None, "note": "seeds reports on classification targets"}
    doc = seedrun.load_result(project, target.name)
    if doc is None:
        return {"saved": None, "hint": hint, "note": None}
    rep = doc["report"]
    rows = [dict(r) for r in (rep.get("flipping_rows") or [])[:SEED_ROWS] if isinstance(r, dict)]
    for r in rows:
        r["thumb"] = thumbs(r.get("origin"))
    _add_values(target, rows)
    base = str(target.config["train"]["seed"])
    return {"saved": doc, "hint": hint, "note": None, "rows": rows,
            "flipping": rep.get("flipping", len(rep.get("flipping_rows") or [])),
            "current": doc["keys"].get(base) == key}


def builds(facts):
    """{"entries": the sidecar's builds (oldest first), "metric": the metric drawn, "series":
    its value per entry (None where an entry lacks it)}."""
    entries = [b for b in facts.get("builds") or [] if isinstance(b, dict)]
    metrics = [b["metrics"] if isinstance(b.get("metrics"), dict) else {} for b in entries]
    metric = next((k for m in reversed(metrics) for k in m), None)    # the latest's first
    series = [m.get(metric) for m in metrics]
    series = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
              for v in series]
    return {"entries": entries, "metric": metric, "series": series}


def _add_values(target, rows):
    cells = row_values(target, [r.get("origin") for r in rows])
    for r in rows:
        r["values"] = cells.get(r.get("origin"))


def row_values(target, origins):
    """{origin: [[column, cell], ...]} for the origins `file:line` of a csv target (the header
    is line 1; one pass over each file); other formats and unreadable files give nothing."""
    loader = target.config["loader"]
    if loader.get("format") != "csv":
        return {}
    wanted = {}
    for o in origins:
        rel, _, line = str(o).rpartition(":")
        if rel and line.isdigit():
            wanted.setdefault(rel, set()).add(int(line))
    out = {}
    for rel, lines in wanted.items():
        try:
            with open(os.path.join(target.root, rel), encoding="utf-8", newline="") as f:
                header = None
                for n, text in enumerate(f, 1):
                    if n > max(lines):
                        break
                    cells = next(csv.reader([text], delimiter=loader.get("delimiter") or ","),
                                 [])
                    if n == 1:
                        header = cells
                    elif n in lines and header:
                        out[f"{rel}:{n}"] = [[c, v] for c, v in zip(header, cells)]
        except (OSError, UnicodeDecodeError):
            continue
    return out

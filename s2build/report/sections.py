"""The HTML of a target's debugger and history parts (report/views.py gathers them): the
training curves, blame views, the seed report and the history of builds. Each function takes
the target's document entry and returns a list of HTML strings; every value is escaped
(report/markup.py), and a thumbnail is a data URI or nothing."""

from s2build.report import svg
from s2build.report.markup import esc, fmt, pct, table, thumb, values


def curves(t):
    """The training loss per epoch, with the holdout loss on the same axes when the build
    recorded it (compile/curve.py), then the holdout metric per epoch."""
    from s2build.report.gather import history, holdout_history
    losses, hold = history(t["facts"]), holdout_history(t["facts"])
    if not losses:
        return ['<p class="muted">no training history recorded</p>']
    if hold is None or not any(v is not None for v in hold["loss"]):
        return [svg.line_chart(losses, title="training loss per epoch", ylabel="loss"),
                '<p class="muted">no holdout curve recorded (an incremental or streamed '
                'build records the training loss only)</p>']
    out = [svg.lines([("training loss", losses), ("holdout loss", hold["loss"])],
                     title="loss per epoch", ylabel="loss")]
    if hold["metric"] and any(v is not None for v in hold["values"]):
        out.append(svg.line_chart(hold["values"], title=f"holdout {hold['metric']} per epoch",
                                  ylabel=hold["metric"], kind="curve holdout"))
    if hold["rows"] != hold["of"]:
        out.append(f'<p class="muted">holdout curve over {esc(hold["rows"])} of '
                   f'{esc(hold["of"])} holdout rows, evenly spaced</p>')
    return out


def _figure_or_origin(row):
    return thumb(row.get("thumb"), row.get("origin")) or \
        f'<span class="loc">{esc(row.get("origin"))}</span>'


def _row_cell(row):
    """A row's picture (images) or its cells (tables), for a table cell."""
    if row.get("thumb"):
        return thumb(row["thumb"], row.get("origin"))
    return f'<span class="loc">{esc(values(row.get("values")))}</span>'


def blame(t):
    b = t.get("blame")
    out = ["<h3>Blame</h3>"]
    if not b:
        return []
    if b["note"]:
        return out + [f'<p class="muted">{esc(b["note"])}</p>']
    if not b["queries"]:
        return out + ['<p class="muted">no holdout row to ask about</p>']
    out.append(f'<p class="muted">{esc(b["wrong"])} of {esc(b["holdout"])} holdout rows '
               "predicted wrong. For each query below, the training rows that most pushed the "
               f"network towards its prediction (last-layer TracIn over {esc(b['checkpoints'])} "
               "checkpoints; <code>s2build blame TARGET --input ORIGIN</code> asks about any "
               "row).</p>")
    for q in b["queries"]:
        out.append(f'<div class="query"><h4>{esc(q["why"])}: <span class="loc">'
                   f'{esc(q["origin"])}</span>, labelled {esc(q["label"])}, predicted '
                   f'{esc(q["prediction"])} (p={esc(pct(q["probability"]))})</h4>')
        out.append(_figure_or_origin(q) if q.get("thumb") else
                   f'<p class="loc">{esc(values(q.get("values")))}</p>')
        out.append('<table class="blame"><tr><th>training row</th><th>label</th>'
                   "<th>influence</th><th>row</th></tr>")
        for r in q["rows"]:
            out.append(f'<tr><td class="loc">{esc(r["origin"])}</td><td>{esc(r["label"])}</td>'
                       f'<td class="n">{esc(fmt(float(r["influence"])))}</td>'
                       f"<td>{_row_cell(r)}</td></tr>")
        out.append("</table></div>")
    return out


def seeds(t):
    s = t.get("seeds")
    if not s:
        return []
    out = ["<h3>Seeds</h3>"]
    if s.get("note"):
        return out + [f'<p class="muted">{esc(s["note"])}</p>']
    if s["saved"] is None:
        return out + [f'<p class="muted">no seed run recorded: <code>{esc(s["hint"])}</code> '
                      "trains the target under 5 seeds and reports the holdout rows whose "
                      "prediction flips between them</p>"]
    doc, rep = s["saved"], s["saved"]["report"]
    if not s["current"]:
        out.append(f'<p class="nobuild">this seed run is of an earlier recipe (the data or '
                   f'the config changed since); run <code>{esc(s["hint"])}</code> again</p>')
    out.append(f'<p>{esc(doc.get("n"))} seeds, run {esc(doc.get("at"))}: disagreement '
               f'{esc(_rate(rep.get("disagreement_rate")))} of {esc(rep.get("holdout_rows"))} '
               f'holdout rows (mean error {esc(_rate(rep.get("mean_error_rate")))}); '
               f'{esc(s["flipping"])} rows flip</p>')
    errs = rep.get("error_rate") or {}
    if errs:
        out.append(table(["seed", "holdout error"], [[k, _rate(v)] for k, v in errs.items()]))
    if s["rows"]:
        seed_names = sorted({k for r in s["rows"] for k in (r.get("predictions") or {})},
                            key=lambda k: (len(k), k))
        out.append('<table class="flips"><tr><th>row</th><th>label</th>'
                   + "".join(f"<th>seed {esc(k)}</th>" for k in seed_names) + "<th></th></tr>")
        for r in s["rows"]:
            preds = r.get("predictions") or {}
            out.append(f'<tr><td class="loc">{esc(r.get("origin"))}</td>'
                       f'<td>{esc(r.get("label"))}</td>'
                       + "".join(f'<td class="{"hit" if preds.get(k) == r.get("label") else "miss"}">'
                                 f"{esc(preds.get(k, '-'))}</td>" for k in seed_names)
                       + f"<td>{_row_cell(r)}</td></tr>")
        out.append("</table>")
        if s["flipping"] > len(s["rows"]):
            out.append(f'<p class="muted">{esc(s["flipping"] - len(s["rows"]))} more flipping '
                       f"rows not shown (<code>s2build seeds {esc(t['name'])} --json</code> "
                       "lists all)</p>")
    specs = rep.get("specs") or {}
    if specs:
        out.append(table(["spec", "passes under"], [
            [n, f"{v.get('passed')} of {v.get('seeds')} seeds"] for n, v in specs.items()
            if isinstance(v, dict)]))
    return out


def _rate(v):
    return f"{v:.1%}" if isinstance(v, (int, float)) else "-"


def builds(t):
    b = t.get("builds")
    if not b or not b["entries"]:
        return []
    out = ["<h3>History of builds</h3>"]
    if b["metric"] and sum(v is not None for v in b["series"]) >= 2:
        out.append(svg.line_chart(b["series"], title=f"{b['metric']} over builds",
                                  xlabel="build", ylabel=b["metric"], kind="builds"))
    out.append('<table class="builds"><tr><th>#</th><th>when</th><th>key</th><th>mode</th>'
               "<th>metrics</th><th>what changed</th></tr>")
    for i, e in reversed(list(enumerate(b["entries"], 1))):       # the latest first
        metrics = e.get("metrics") if isinstance(e.get("metrics"), dict) else {}
        changes = e.get("changes") if isinstance(e.get("changes"), list) else []
        how = f"{e.get('mode') or '-'}" + (" (restored from cache)" if e.get("restored") else "")
        out.append(f'<tr><td class="n">{i}</td><td>{esc(e.get("at") or "-")}</td>'
                   f'<td class="loc">{esc(e.get("key") or "-")}</td><td>{esc(how)}</td>'
                   f'<td>{esc(", ".join(f"{k}={fmt(v)}" for k, v in metrics.items()))}</td>'
                   f'<td>{"<br>".join(esc(c) for c in changes)}</td></tr>')
    return out + ["</table>"]

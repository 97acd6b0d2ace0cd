"""The `s2build report` page: one self-contained HTML file drawn from report/gather.py's
document. Inline CSS, inline SVG (report/svg.py) and images as `data:image/png` URIs
(report/thumbs.py); no script, no font, no URL that leaves the page, so it opens offline and
can be kept as a CI artifact. The debugger's parts (blame, seeds, history of builds) are drawn
by report/sections.py.

Every value that comes from the project (names, messages, metadata, cells) goes through `esc`
(report/markup.py: html.escape, quotes included). `page(doc)` returns the text; `write(path,
doc)` writes it atomically (temp file + os.replace: a reader sees the old report or the new
one).
"""

from s2build.report import sections
from s2build.report import svg
from s2build.report.markup import esc, fmt, pct, size, table, thumb, values

PROVENANCE_CHARS = 3000     # a longer metadata value is cut (the ONNX file holds all of it)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:1em 2em;color:#222}
h1{font-size:1.5em}h2{border-bottom:2px solid #ccd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.4em 0 .4em}h4{font-size:.95em;font-weight:600;margin:1em 0 .3em}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccd;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f2f3f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cm td.n{min-width:2.5em}.cm td.hit{background:#dcefdc}.cm td.miss{background:#f6dede}
.flips td.hit{background:#dcefdc}.flips td.miss{background:#f6dede}
.passed{color:#176a17;font-weight:600}.failed{color:#a31515;font-weight:600}
.error{color:#a31515}.warning{color:#8a5a00}.note{color:#455}
.nobuild{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em}
code,.loc{font-family:ui-monospace,monospace;font-size:.92em}
svg.chart{width:100%;max-width:560px;height:auto;display:block;margin:.4em 0}
svg .frame{fill:#fafbfe;stroke:#ccd}svg .line{stroke:#3060c0;stroke-width:2}
svg .pt{fill:#3060c0}svg .diag{stroke:#aaa;stroke-dasharray:4 3}
svg .line.s1{stroke:#d0702a}svg .pt.s1{fill:#d0702a}svg .line.s2{stroke:#2a9d5c}svg .pt.s2{fill:#2a9d5c}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .title{font-size:13px;fill:#222}
figure.thumb{display:inline-block;margin:2px 6px 2px 0;text-align:center}
figure.thumb img{width:64px;height:64px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccd;display:block}
figure.thumb figcaption{font-size:.75em;color:#555}
details pre{white-space:pre-wrap;word-break:break-all;font-size:.85em;margin:0}
.muted{color:#666}
"""


# --- Sections ------------------------------------------------------------------------------

def _training(t):
    facts = t["facts"]
    out = ["<h3>Training</h3>"] + sections.curves(t)
    metrics = facts.get("metrics") or {}
    rows = facts.get("rows") or {}
    if metrics:
        out.append("<h3>Holdout metrics</h3>")
        out.append(table(["metric", "value"], [[k, v] for k, v in sorted(metrics.items())]))
    if rows:
        out.append(f'<p class="muted">{esc(rows.get("train", "?"))} training rows, '
                   f'{esc(rows.get("holdout", "?"))} holdout rows</p>')
    return out


def _confusion(cm):
    names = cm["classes"]
    out = ["<h3>Confusion matrix (holdout)</h3>",
           f'<p class="muted">{esc(cm["rows"])} holdout rows; rows: true class, columns: '
           f'predicted; from {esc(cm["source"])}</p>',
           '<table class="cm"><tr><th>true \\ predicted</th>'
           + "".join(f"<th>{esc(c)}</th>" for c in names) + "<th>recall</th></tr>"]
    for i, row in enumerate(cm["matrix"]):
        cells = "".join(f'<td class="n {"hit" if i == j else "miss" if v else ""}" '
                        f'data-count="{int(v)}">{esc(v)}</td>' for j, v in enumerate(row))
        out.append(f"<tr><th>{esc(names[i])}</th>{cells}"
                   f'<td class="n">{esc(pct(cm["recall"][i]))}</td></tr>')
    out.append("<tr><th>precision</th>" + "".join(
        f'<td class="n">{esc(pct(p))}</td>' for p in cm["precision"]) + "<td></td></tr></table>")
    return out


def _regression(reg):
    out = ["<h3>Predicted against true (holdout)</h3>",
           f'<p class="muted">{esc(reg["shown"])} of {esc(reg["rows"])} holdout rows; from '
           f'{esc(reg["source"])}</p>']
    for col in reg["columns"]:
        out.append(svg.scatter(col["true"], col["pred"], title=col["name"]))
    return out


def _specs(t):
    specs = t["specs"]
    out = ["<h3>Specs</h3>"]
    if not specs:
        return out + ['<p class="muted">no specs (add <code>specs:</code> to the target)</p>']
    passed = sum(s["passed"] for s in specs)
    out.append(f"<p>{passed} passed, {len(specs) - passed} failed</p><table>"
               "<tr><th>spec</th><th>result</th><th>yaml</th><th>message</th></tr>")
    for s in specs:
        word = "PASSED" if s["passed"] else "FAILED"
        out.append(f'<tr class="spec"><td>{esc(s["name"])}</td>'
                   f'<td class="{word.lower()}">{word}</td><td class="loc">{esc(s["location"])}'
                   f'</td><td>{esc(s["message"])}</td></tr>')
    return out + ["</table>"]


def _lint(t):
    lint = t["lint"]
    out = ["<h3>Lint</h3>"]
    if lint is None:
        return out
    if lint.get("error"):
        return out + [f'<p class="error">the data does not load: {esc(lint["error"])}</p>']
    c = lint["counts"]
    out.append(f"<p>{esc(c.get('error', 0))} errors, {esc(c.get('warning', 0))} warnings, "
               f"{esc(c.get('note', 0))} notes</p>")
    if lint["shown"]:
        out.append("<table><tr><th>where</th><th>severity</th><th>check</th><th>message</th>"
                   "<th>row</th></tr>")
        for d in lint["shown"]:
            row = thumb(d.get("thumb"), d["origin"]) or \
                f'<span class="loc">{esc(values(d.get("values")))}</span>'
            out.append(f'<tr><td class="loc">{esc(d["origin"])}</td>'
                       f'<td class="{esc(d["severity"])}">{esc(d["severity"])}</td>'
                       f'<td>{esc(d["check"])}</td><td>{esc(d["message"])}</td>'
                       f"<td>{row}</td></tr>")
        out.append("</table>")
    for check, n in sorted(lint["left"].items(), key=lambda kv: -kv[1]):
        out.append(f'<p class="muted">{esc(check)}: {esc(n)} more not shown '
                   f'(<code>s2build lint --json</code> lists all)</p>')
    return out


def _artifact(t):
    a, facts = t["artifact"], t["facts"]
    out = ["<h3>Artifact</h3>"]
    rows = [["file", a["path"]], ["size", size(a["size"])], ["sha256", a["sha256"] or "-"],
            ["build key", a["build_key"] or "-"], ["mode", facts.get("mode", "-")],
            ["built at", facts.get("built_at", "-")], ["device", facts.get("device", "-")],
            ["restored from cache", facts.get("restored_from_cache", "-")],
            ["inputs", "; ".join(f"{n}: {e} [{', '.join(str(d) for d in s)}]"
                                 for n, e, s in a["inputs"])],
            ["outputs", ", ".join(a["outputs"])]]
    ver = facts.get("verification") or {}
    if ver:
        rows.append(["verification", ", ".join(f"{k} {fmt(v)}" for k, v in sorted(ver.items()))])
    out.append(table(["fact", "value"], rows))
    timings = facts.get("timings") or {}
    if timings:
        out.append("<h3>Timings (seconds)</h3>")
        out.append(table(["step", "seconds"], [[k, float(v)] for k, v in timings.items()
                                               if isinstance(v, (int, float))]))
    if a["provenance"]:
        out.append("<details><summary>provenance (ONNX metadata)</summary><table>"
                   + "".join(f"<tr><th>{esc(k)}</th><td><pre>{esc(_cut(v))}</pre></td></tr>"
                             for k, v in sorted(a["provenance"].items()))
                   + "</table></details>")
    return out


def _cut(v):
    v = str(v)
    if len(v) <= PROVENANCE_CHARS:
        return v
    return f"{v[:PROVENANCE_CHARS]}... ({len(v) - PROVENANCE_CHARS} more characters in the file)"


def target_section(t):
    """The <section> of one target of the document."""
    out = [f'<section id="t-{esc(t["name"])}"><h2>{esc(t["name"])} '
           f'<span class="muted">({esc(t["task"])}, {esc(t["output"])})</span></h2>']
    if not t["built"]:
        return "".join(out + [f'<p class="nobuild">{esc(t["why_not"])}</p></section>'])
    out += _training(t)
    if t["confusion"]:
        out += _confusion(t["confusion"])
    if t["regression"]:
        out += _regression(t["regression"])
    out += _specs(t) + _lint(t) + sections.blame(t) + sections.seeds(t) + sections.builds(t)
    out += _artifact(t)
    return "".join(out + ["</section>"])


def page(doc):
    """The whole HTML document for a report document (gather.collect)."""
    title = f"s2build report: {doc['project']}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    if doc.get("build_error"):
        e = doc["build_error"]
        parts.append(f'<p class="nobuild">the build failed (exit {esc(e["exit_code"])}): '
                     f'{esc(e["message"])}</p>')
    parts.append("<ul>" + "".join(
        f'<li><a href="#t-{esc(t["name"])}">{esc(t["name"])}</a>'
        + ("" if t["built"] else ' <span class="muted">(no build)</span>') + "</li>"
        for t in doc["targets"]) + "</ul>")
    parts += [target_section(t) for t in doc["targets"]]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write(path, doc):
    """Write the page for `doc` to `path` atomically."""
    from s2build import atomic
    atomic.write_text(path, page(doc))


def render(project, names, path, **collect):
    """Gather the document of `names` from what is built (nothing is built: gather.collect
    with build=False and `collect`'s other arguments) and write its page to `path`."""
    from s2build.report import gather
    write(path, gather.collect(project, names, None, build=False, **collect))

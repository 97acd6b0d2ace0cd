"""Static inline SVG charts for the HTML report (report/html.py): standard library only, no
script, every label escaped.

    line_chart(ys, ...)       one polyline over x = 1..len(ys), one <circle> per point
    lines(series, ...)        several such lines on shared axes (training and holdout loss),
                              the second and later of class `s1`, `s2`, with a legend
    scatter(xs, ys, ...)      points with the y = x diagonal (predicted against true)

Each returns one `<svg>` element as a string, inline in HTML5 (no xmlns: the page names no URL); its `points` attribute and circles carry the data
exactly once per value, so a test can count them. Non-finite values are left out of the scale
and drawn as no point (a line chart breaks there).
"""

import math
from html import escape

W, H = 480, 260                    # view box; the page scales it to its width
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 28, 40


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def _span(values):
    """(low, high) of the finite `values`, widened so that low < high."""
    vs = [float(v) for v in values if _finite(v)]
    if not vs:
        return 0.0, 1.0
    lo, hi = min(vs), max(vs)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _num(v):
    return f"{v:.4g}"


class _Frame:
    """Maps data coordinates into the plot area of the view box."""

    def __init__(self, xspan, yspan):
        self.x0, self.x1 = xspan
        self.y0, self.y1 = yspan

    def x(self, v):
        return PAD_L + (float(v) - self.x0) / (self.x1 - self.x0) * (W - PAD_L - PAD_R)

    def y(self, v):
        return H - PAD_B - (float(v) - self.y0) / (self.y1 - self.y0) * (H - PAD_T - PAD_B)

    def axes(self, title, xlabel, ylabel, ticks=4):
        """The frame, tick labels at both axes' ends and quarters, the title and axis names."""
        out = [f'<rect class="frame" x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
               f'height="{H - PAD_T - PAD_B}"/>']
        for i in range(ticks + 1):
            xv = self.x0 + (self.x1 - self.x0) * i / ticks
            yv = self.y0 + (self.y1 - self.y0) * i / ticks
            out.append(f'<text class="tick" x="{self.x(xv):.1f}" y="{H - PAD_B + 14}" '
                       f'text-anchor="middle">{escape(_num(xv))}</text>')
            out.append(f'<text class="tick" x="{PAD_L - 4}" y="{self.y(yv) + 4:.1f}" '
                       f'text-anchor="end">{escape(_num(yv))}</text>')
        out.append(f'<text class="title" x="{W / 2}" y="{PAD_T - 10}" text-anchor="middle">'
                   f'{escape(title)}</text>')
        out.append(f'<text class="label" x="{(PAD_L + W - PAD_R) / 2}" y="{H - 6}" '
                   f'text-anchor="middle">{escape(xlabel)}</text>')
        out.append(f'<text class="label" x="12" y="{(PAD_T + H - PAD_B) / 2}" '
                   f'text-anchor="middle" transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">'
                   f'{escape(ylabel)}</text>')
        return out


def _svg(kind, title, body):
    return (f'<svg class="chart {escape(kind)}" '
            f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">'
            + "".join(body) + "</svg>")


def line_chart(ys, title="", xlabel="epoch", ylabel="", kind="curve"):
    """A line through (i, ys[i-1]) for i = 1..len(ys): one polyline whose `points` hold one
    pair per finite value, and one <circle data-x="i"> per finite value with a <title>."""
    return lines([("", ys)], title, xlabel, ylabel, kind)


def lines(series, title="", xlabel="epoch", ylabel="", kind="curve"):
    """line_chart's line for each (name, ys) of `series`, on one scale: series s > 0 draws
    with class `s{s}` (its own colour) and a named series gets a legend entry."""
    clean = [(str(name), [float(v) if _finite(v) else None for v in ys]) for name, ys in series]
    f = _Frame((1, max([2] + [len(ys) for _n, ys in clean])),
               _span([v for _n, ys in clean for v in ys if v is not None]))
    body = f.axes(title, xlabel, ylabel)
    for s, (name, ys) in enumerate(clean):
        cls = f" s{s}" if s else ""
        pts = [(i, v) for i, v in enumerate(ys, 1) if v is not None]
        coords = " ".join(f"{f.x(i):.1f},{f.y(v):.1f}" for i, v in pts)
        body.append(f'<polyline class="line{cls}" fill="none" points="{coords}"/>')
        for i, v in pts:
            body.append(f'<circle class="pt{cls}" data-x="{i}" cx="{f.x(i):.1f}" '
                        f'cy="{f.y(v):.1f}" r="2.5"><title>'
                        f'{escape(f"{name} {xlabel} {i}: {v:.6g}".strip())}</title></circle>')
        if name:
            y = PAD_T + 14 + 14 * s
            x = W - PAD_R - 8
            body.append(f'<line class="line{cls}" x1="{x - 118}" y1="{y - 4}" x2="{x - 100}" '
                        f'y2="{y - 4}"/><text class="legend" x="{x - 96}" y="{y}">'
                        f'{escape(name)}</text>')
    return _svg(kind, title, body)


def scatter(xs, ys, title="", xlabel="true", ylabel="predicted", kind="scatter"):
    """Points (xs[i], ys[i]) on shared axes with the y = x diagonal: one <circle> per pair of
    finite values."""
    pairs = [(float(a), float(b)) for a, b in zip(xs, ys) if _finite(a) and _finite(b)]
    span = _span([v for p in pairs for v in p])
    f = _Frame(span, span)
    body = f.axes(title, xlabel, ylabel)
    body.append(f'<line class="diag" x1="{f.x(span[0]):.1f}" y1="{f.y(span[0]):.1f}" '
                f'x2="{f.x(span[1]):.1f}" y2="{f.y(span[1]):.1f}"/>')
    for a, b in pairs:
        body.append(f'<circle class="pt" cx="{f.x(a):.1f}" cy="{f.y(b):.1f}" r="2.5">'
                    f'<title>{escape(f"{xlabel} {a:.4g}, {ylabel} {b:.4g}")}</title></circle>')
    return _svg(kind, title, body)

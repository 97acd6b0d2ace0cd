"""The HTML pieces report/html.py and report/sections.py share: escaping, number formats,
tables, thumbnails. Every value that comes from the project goes through `esc` (html.escape,
quotes included); a thumbnail's `src` is only ever a data:image/png URI made by
report/thumbs.py."""

import math
from html import escape

DATA_PNG = "data:image/png;base64,"


def esc(value):
    """Text made safe for HTML content and attribute values."""
    return escape(str(value), quote=True)


def fmt(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return "-" if v is None else str(v)


def pct(v):
    return "-" if v is None else f"{v:.3f}"


def size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _number(c):
    return isinstance(c, (int, float)) and not isinstance(c, bool)


def table(headers, rows, cls=""):
    """A <table>: `headers` [str]; `rows` [[cell]] of plain values, escaped here (numbers are
    right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{esc(fmt(c))}</td>' if _number(c) else f"<td>{esc(fmt(c))}</td>"
        for c in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><tr>{head}</tr>{body}</table>'


def thumb(uri, caption):
    """A <figure> with the image `uri` (a PNG data URI, else nothing is drawn) and its origin
    as the caption; '' when there is no image."""
    if not isinstance(uri, str) or not uri.startswith(DATA_PNG):
        return ""
    return (f'<figure class="thumb"><img src="{esc(uri)}" alt="{esc(caption)}">'
            f'<figcaption class="loc">{esc(caption)}</figcaption></figure>')


def values(cells):
    """A table row's cells [[column, value]] as one line of text ('' for none)."""
    return ", ".join(f"{k}={v}" for k, v in cells) if cells else ""

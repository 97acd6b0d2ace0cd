"""What lint prints: a budget of diagnostics, like a compiler that stops after N errors.

A 50,000-row table can give thousands of diagnostics and nobody reads that. `select` keeps the
`per_check` strongest diagnostics of each check (errors are never dropped), and lint prints the
kept ones in file order (file, then line, as a compiler does), then one line per check that has
more, with the count left out. `--json` always carries every diagnostic.
"""

import re

_LINE = re.compile(r"^(.*?):(\d+)(?::\d+)?$")


def file_order(d):
    """Sort key: the origin's file, then its line as a number (`a.csv:9` before `a.csv:10`)."""
    m = _LINE.match(d.origin)
    return (m.group(1), int(m.group(2))) if m else (d.origin, 0)


def select(diags, per_check):
    """(shown in file order, {check: how many were left out}). `diags` come ranked (lint.sort:
    severity, then confidence); per_check 0 or None keeps everything."""
    shown, left, kept = [], {}, {}
    for d in diags:
        n = kept.get(d.check, 0)
        if per_check and n >= per_check and d.severity != "error":
            left[d.check] = left.get(d.check, 0) + 1
            continue
        kept[d.check] = n + 1
        shown.append(d)
    return sorted(shown, key=file_order), left


def summary_lines(left):
    """`lint: CHECK: N more not shown (...)` lines, one per check that had more, biggest first."""
    return [f"lint: {check}: {n:,} more not shown (--max 0 shows all, --json lists all)"
            for check, n in sorted(left.items(), key=lambda kv: -kv[1])]

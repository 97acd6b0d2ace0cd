"""A Markdown summary of a `ci` run, fit for a pull-request comment: per target the build
outcome, artifact digest, metrics with their change against s2build.lock, and spec counts; the
failed specs with their yaml locations; the lock check."""


def _fmt(v):
    return f"{float(v):.4g}"


def _delta(cur, old):
    if old is None:
        return "new"
    d = float(f"{float(cur):.6g}") - float(old)
    return "=" if abs(d) < 5e-7 else f"{d:+.4g}"


def markdown(doc):
    """A Markdown summary of a ci run (`doc` is the ci JSON document)."""
    ok = doc["exit_code"] == 0
    lines = [f"## s2build ci: {'passed' if ok else 'failed'}", ""]
    if doc.get("error"):
        lines += [f"**Error** (exit {doc['exit_code']}):", "", f"> {doc['error']}", ""]
    if doc["targets"]:
        lines += ["| target | build | artifact | metrics (change vs s2build.lock) | specs |",
                  "|---|---|---|---|---|"]
        for t in doc["targets"]:
            mets = ", ".join(f"{k} {_fmt(v)} ({_delta(v, t['lock_metrics'].get(k))})"
                             for k, v in t["metrics"].items()) or "-"
            sp = t["specs"]
            spec_text = f"{sp['passed']} passed, {sp['failed']} failed" if sp["total"] else "none"
            art = f"`{t['artifact_sha256'][:12]}`" if t.get("artifact_sha256") else "-"
            if t.get("lock_artifact") and t.get("artifact_sha256") \
                    and t["lock_artifact"] != t["artifact_sha256"]:
                art += f" (lock: `{t['lock_artifact'][:12]}`)"
            lines.append(f"| {t['name']} | {t['outcome'].replace('-', ' ')} | {art} | {mets} | "
                         f"{spec_text} |")
        lines.append("")
    failed = [s for s in doc["specs"] if not s["passed"]]
    if failed:
        lines += ["### Failed specs", ""]
        lines += [f"- `{s['target']}::{s['name']}` at `{s['location']}`: {s['message']}"
                  for s in failed]
        lines.append("")
    lock = doc["lock"]
    lines.append(f"**s2build.lock**: {lock['text']}")
    for d in lock.get("differences", []):
        lines.append(f"- {d}")
    lines += ["", f"{doc['passed']} passed, {doc['failed']} failed", ""]
    return "\n".join(lines)

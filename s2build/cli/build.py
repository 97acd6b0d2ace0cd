"""Commands about building: build, status, explain, graph, clean, gc.

Thin: each parses nothing itself, calls the engine or the store, and prints. Standard library
only at import (`status` and a no-op `build` stay free of torch and numpy).
"""

import json
import sys

from s2build import errors
from s2build.cli import common


def cmd_build(args):
    from s2build.engine import runner
    project = common.load(args)
    rep = common.reporter(args)
    try:
        runner.build(project, args.targets, rep, wait=not args.no_wait,
                     mode="dev" if args.dev and not args.release else "release",
                     jobs=args.jobs, fail_fast=args.fail_fast)
    finally:
        rep.finish()
    return errors.OK


def cmd_status(args):
    from s2build.engine import runner
    from s2build.store import gc
    project = common.load(args)
    steps, state = runner.status(project, args.targets)
    stale = [s for s in steps if s.action != "up-to-date"]
    rule_steps = state.rule_steps
    stale_rules = [s.rule.name for s in rule_steps if s.action != "up-to-date"]
    entries, size = gc.cache_size(project)
    if args.json:
        json.dump({"stale": stale_rules + [s.target.name for s in stale],
                   "rules": [{"name": s.rule.name, "action": s.action, "key": s.key,
                              "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]}
                             for s in rule_steps],
                   "targets": [{"name": s.target.name, "action": s.action, "key": s.inputs.key,
                                "from": _source(s),
                                "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]}
                               for s in steps],
                   "cache": {"entries": entries, "bytes": size}}, sys.stdout, indent=2)
        print()
    else:
        if state.warning:
            print(f"s2build: warning: {state.warning}", file=sys.stderr)
        for s in rule_steps:
            print(_rule_line(s))
        for s in steps:
            if s.action == "up-to-date":
                print(f"{s.target.name}: up to date")
            else:
                how = "needs a build" if s.action != "restore" else \
                    "restorable from remote cache" if s.remote else "restorable from cache"
                print(f"{s.target.name}: stale, {how} ({s.reasons[0].text}"
                      + (f"; +{len(s.reasons) - 1} more" if len(s.reasons) > 1 else "") + ")")
        print(f"cache: {entries} entr{'y' if entries == 1 else 'ies'}, {gc.megabytes(size)}")
    return errors.STALE if stale or stale_rules else errors.OK


def _rule_line(s):
    """`status`'s line for a rule (engine/rules.py's RuleStep)."""
    if s.action == "up-to-date":
        return f"{s.rule.name}: up to date (rule)"
    how = "restorable from cache" if s.action == "restore" else "needs a run"
    return (f"{s.rule.name}: stale rule, {how} ({s.reasons[0].text}"
            + (f"; +{len(s.reasons) - 1} more" if len(s.reasons) > 1 else "") + ")")


def _source(step):
    """Where a restore comes from: 'local' or 'remote' (the remote cache); None otherwise."""
    return ("remote" if step.remote else "local") if step.action == "restore" else None


def cmd_explain(args):
    from s2build.engine import runner
    project = common.load(args)
    steps, state = runner.status(project, args.targets)
    wanted = set(args.targets)
    out = []
    for s in state.rule_steps:
        if s.rule.name not in wanted:
            continue
        if args.json:
            out.append({"name": s.rule.name, "rule": True, "action": s.action, "key": s.key,
                        "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]})
        elif not s.reasons:
            outs = ", ".join(o + ("/" if f else "") for o, f in s.rule.outputs)
            print(f"{s.rule.name}: up to date (rule key {s.key[:12]}, outputs {outs})")
        else:
            verb = "will be restored from cache" if s.action == "restore" else "will run"
            print(f"{s.rule.name} {verb} because:")
            for r in s.reasons:
                print(f"  {r.text}")
    for s in steps:
        if s.target.name not in wanted:
            continue
        if args.json:
            out.append({"name": s.target.name, "action": s.action, "key": s.inputs.key,
                        "from": _source(s),
                        "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]})
            continue
        if not s.reasons:
            print(f"{s.target.name}: up to date (build key {s.inputs.key[:12]}, "
                  f"output {s.target.config['output']})")
            continue
        verb = "will be built" if s.action != "restore" else \
            "will be restored from remote cache" if s.remote else "will be restored from cache"
        print(f"{s.target.name} {verb} because:")
        old_sources = (state.targets.get(s.target.name) or {}).get("sources", {})
        for r in s.reasons:
            print(f"  {r.text}")
            if r.kind == "file-changed" and not args.no_rows:
                for line in _row_changes(project, s, r.text.split(": ", 1)[1], old_sources):
                    print(f"    {line}")
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    return errors.OK


def _row_changes(project, step, rel, old_sources):
    """Row-level differences of one changed file (numpy needed: only on this path)."""
    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    old, new = old_sources.get(rel), step.inputs.sources.get(rel)
    if not old or not new:
        return []
    return data.row_changes(step.target, rel, old, new, ShardStore(project.state_dir))


def cmd_graph(args):
    from s2build.project import graph
    project = common.load(args)
    graph.check(project)
    if args.dot:
        print(graph.to_dot(project))
    elif args.json:
        from s2build.project import rules
        doc = {n: {"rule": True, "command": r.config["command"], "inputs": r.config["inputs"],
                   "outputs": r.config["outputs"],
                   "deps": list(dict.fromkeys(d for d, _i in rules.rule_deps(project, r)))}
               for n, r in project.rules.items()}
        doc.update({n: {"deps": t.config["deps"], "output": t.config["output"],
                        "rules": rules.reads(project, t),
                        "upstream": t.config.get("upstream")}
                    for n, t in project.targets.items()})
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        from s2build.project import rules
        for name in rules.order(project):
            deps = list(dict.fromkeys(d for d, _i in rules.rule_deps(project,
                                                                      project.rules[name])))
            outs = ", ".join(project.rules[name].config["outputs"])
            print(f"{name} (rule) -> {outs}" + (f" <- {', '.join(deps)}" if deps else ""))
        for name in graph.order(project):
            t = project.targets[name]
            deps = rules.reads(project, t) + t.config["deps"]
            if graph.upstream(t):                      # what flows: `head <- extractor (features)`
                deps = [d for d in deps if d != graph.upstream(t)] + \
                    [f"{graph.upstream(t)} ({t.config['upstream']['use']})"]
            print(name + (f" <- {', '.join(deps)}" if deps else ""))
    return errors.OK


def cmd_clean(args):
    from s2build.store import gc
    project = common.load(args)
    from s2build.engine import rules
    rules.needed(project, args.targets)                # unknown names: did-you-mean error
    wanted_rules = [n for n in args.targets if n in project.rules] if args.targets else None
    names = [n for n in args.targets if n in project.targets] if args.targets \
        else list(project.targets)                      # only these, not their dependencies
    removed, kept = gc.clean(project, names, cache=args.cache, rule_names=wanted_rules,
                             on_wait=lambda m: print(f"s2build: {m}", file=sys.stderr))
    for p in removed:
        print(f"removed {p}")
    for p, why in kept:
        print(f"kept {p} ({why})")
    if not removed:
        print("nothing to clean")
    return errors.OK


def cmd_gc(args):
    from s2build.store import gc
    project = common.load(args)
    try:
        cap = gc.parse_size(args.max_size)
    except ValueError as e:
        raise errors.UsageError(f"--max-size {args.max_size}: {e}",
                                hint="a size such as 500M, 2G or 1048576") from None
    res = gc.collect(project, cap, dry_run=args.dry_run,
                     on_wait=lambda m: print(f"s2build: {m}", file=sys.stderr))
    verb = "would remove" if args.dry_run else "removed"
    for key, size in res.removed:
        print(f"{verb} {key[:12]} ({gc.megabytes(size)})")
    print(f"gc: {verb} {len(res.removed)} entr{'y' if len(res.removed) == 1 else 'ies'} "
          f"({gc.megabytes(res.freed)}); kept {res.kept} ({gc.megabytes(res.kept_bytes)}, "
          f"{res.pinned} pinned by s2build.lock, state.json or a dev build's parents)")
    if res.upstream:
        print(f"gc: {verb} {len(res.upstream)} upstream output"
              f"{'' if len(res.upstream) == 1 else 's'} ({gc.megabytes(res.upstream_freed)}; "
              "a build that needs one runs its upstream again)")
    if res.kept_bytes > cap:
        print(f"gc: warning: pinned entries alone take {gc.megabytes(res.kept_bytes)}, over "
              f"--max-size {args.max_size}", file=sys.stderr)
    return errors.OK


def add_jobs(p):
    """-j N and --fail-fast (build, test, ci): engine/parallel.py."""
    p.add_argument("-j", "--jobs", type=common.count_arg(low=1), default=1, metavar="N",
                   help="build up to N independent targets at once, each in its own process "
                   "(default 1: one after the other in this process, stopping at the first "
                   "failure); with N > 1 a failure skips only its dependents")
    p.add_argument("--fail-fast", action="store_true",
                   help="with -j: stop every build at the first failure")


def add_nproc(p):
    """--nproc N (build, status, explain): overrides every target's train.nproc."""
    p.add_argument("--nproc", type=common.count_arg(low=1), default=None, metavar="N",
                   help="train each target in N processes under torchrun (DDP), whatever its "
                   "train.nproc says; the world size is in the build key")


def add_parsers(sub):
    b = sub.add_parser("build", help="build stale targets")
    b.add_argument("targets", nargs="*", metavar="TARGET")
    b.add_argument("--release", action="store_true",
                   help="from scratch, seeded, one thread (the default)")
    b.add_argument("--dev", action="store_true",
                   help="incremental: fine-tune the last build on the changed rows when the "
                   "change is small, else a full (release) build")
    b.add_argument("--no-wait", action="store_true",
                   help="fail (exit 10) instead of waiting when another build holds the lock")
    b.add_argument("--json", action="store_true", help="print results as JSON")
    add_jobs(b)
    add_nproc(b)
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("status", help="list stale targets (exit 1 if any) and the cache size")
    s.add_argument("targets", nargs="*", metavar="TARGET")
    s.add_argument("--json", action="store_true")
    add_nproc(s)
    s.set_defaults(func=cmd_status)

    e = sub.add_parser("explain", help="why targets or rules are stale")
    e.add_argument("targets", nargs="+", metavar="TARGET_OR_RULE")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-rows", action="store_true", help="do not list the rows that changed")
    add_nproc(e)
    e.set_defaults(func=cmd_explain)

    g = sub.add_parser("graph", help="show the target graph")
    g.add_argument("--dot", action="store_true", help="Graphviz output")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_graph)

    c = sub.add_parser("clean", help="remove the outputs s2build wrote")
    c.add_argument("targets", nargs="*", metavar="TARGET")
    c.add_argument("--cache", action="store_true", help="also remove .s2build/ (cache, state)")
    c.set_defaults(func=cmd_clean)

    gc = sub.add_parser("gc", help="remove least recently used cache entries over a size cap")
    gc.add_argument("--max-size", default="2G", metavar="SIZE",
                    help="cap on the cache, e.g. 500M or 2G (default 2G)")
    gc.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    gc.set_defaults(func=cmd_gc)

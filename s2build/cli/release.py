"""Release commands: test, lock, ci, verify, watch, report. Thin: the work is in
s2build/release/, s2build/engine/watch.py and s2build/report/ (gather, html)."""

from s2build.cli import common


def cmd_test(args):
    from s2build.release import pipeline
    project = common.load(args)
    return pipeline.test(project, args.targets, common.console(args),
                         junit=common.out_path(args, args.junit), as_json=args.json)


def cmd_lock(args):
    from s2build.release import pipeline
    project = common.load(args)
    return pipeline.lock(project, args.targets, common.console(args))


def cmd_ci(args):
    from s2build.release import pipeline
    project = common.load(args)
    return pipeline.ci(project, args.targets, common.console(args), frozen=args.frozen,
                       junit=common.out_path(args, args.junit),
                       json_path=common.out_path(args, args.json),
                       md_path=common.out_path(args, args.markdown),
                       html_path=common.out_path(args, args.html))


def cmd_report(args):
    """Build what is stale, then write the HTML report; prints its path. Exit 0 once written,
    even when specs fail or lint finds errors (the page shows them); a build that failed
    gives its own exit code, after the page (which names the targets without a build)."""
    import os
    import sys
    from s2build.report import gather, html
    project = common.load(args)
    path = common.out_path(args, args.output) if args.output else \
        os.path.join(project.root, "build", "report.html")
    doc = gather.collect(project, args.targets, common.console(args, sys.stderr))
    html.write(path, doc)
    built = [t for t in doc["targets"] if t["built"]]
    specs = [s for t in built for s in t["specs"]]
    passed = sum(s["passed"] for s in specs)
    missing = [t["name"] for t in doc["targets"] if not t["built"]]
    print(f"report: {os.path.relpath(path, args.cwd)} ({len(built)} of {len(doc['targets'])} "
          f"targets built; specs: {passed} passed, {len(specs) - passed} failed)"
          + (f"; no build: {', '.join(missing)}" if missing else ""))
    return doc["build_error"]["exit_code"] if doc["build_error"] else 0


def cmd_verify(args):
    from s2build.release import verify
    project = common.load(args)
    return verify.verify(project, args.targets, keep=args.keep)


def cmd_watch(args):
    from s2build.engine import watch
    from s2build.project import graph
    project = common.load(args)
    graph.order(project, args.targets)                 # unknown names: did-you-mean error
    return watch.watch(project, args.targets, mode="release" if args.release else "dev",
                       debounce=args.debounce, verbose=args.verbose,
                       report=common.out_path(args, args.report) if args.report else None)


def add_parsers(sub):
    t = sub.add_parser("test", help="build what is stale and run the specs")
    t.add_argument("targets", nargs="*", metavar="TARGET")
    t.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE")
    t.add_argument("--json", action="store_true", help="print results as JSON")
    t.set_defaults(func=cmd_test)

    lk = sub.add_parser("lock", help="release-build and write s2build.lock")
    lk.add_argument("targets", nargs="*", metavar="TARGET")
    lk.set_defaults(func=cmd_lock)

    ci = sub.add_parser("ci", help="release builds, specs, lock check and reports")
    ci.add_argument("targets", nargs="*", metavar="TARGET")
    ci.add_argument("--frozen", action="store_true",
                    help="fail (exit 8) when the sources no longer match s2build.lock")
    ci.add_argument("--junit", metavar="FILE", help="write the specs as JUnit XML")
    ci.add_argument("--json", metavar="FILE", help="write a JSON report")
    ci.add_argument("--markdown", metavar="FILE", help="write a Markdown summary")
    ci.add_argument("--html", metavar="FILE", help="write the HTML report (as `s2build report`)")
    ci.set_defaults(func=cmd_ci)

    r = sub.add_parser("report", help="build what is stale, write one self-contained HTML report")
    r.add_argument("targets", nargs="*", metavar="TARGET")
    r.add_argument("-o", "--output", metavar="FILE",
                   help="where to write it (default: build/report.html in the project)")
    r.set_defaults(func=cmd_report)

    v = sub.add_parser("verify", help="rebuild from scratch and compare with s2build.lock")
    v.add_argument("targets", nargs="*", metavar="TARGET")
    v.add_argument("--keep", action="store_true", help="keep the scratch project")
    v.set_defaults(func=cmd_verify)

    w = sub.add_parser("watch", help="rebuild on every saved change (Ctrl-C to stop)")
    w.add_argument("targets", nargs="*", metavar="TARGET")
    w.add_argument("--release", action="store_true",
                   help="release builds (from scratch) instead of incremental dev builds")
    w.add_argument("--debounce", type=float, default=0.3, metavar="SECONDS",
                   help="quiet time before changes are examined (default 0.3)")
    w.add_argument("--report", metavar="FILE",
                   help="rewrite the HTML report (as `s2build report`) at FILE after each build")
    w.set_defaults(func=cmd_watch)

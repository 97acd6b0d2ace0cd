"""The `s2build` command line.

    s2build [-f FILE | -C DIR] [-v] COMMAND ...

    build [TARGET...]        build what is stale, dependencies first
    status [TARGET...]       list stale targets (exit 1 if any)
    explain TARGET...        why each target is stale, in words
    graph                    the target graph (text, --dot or --json)
    predict TARGET FILE      run the artifact in onnxruntime on rows of a csv/json/jsonl file
    clean [TARGET...]        remove outputs (--cache: also .s2build/)
    lint [TARGET...]         data diagnostics at file:line (--fail-on LEVEL for CI)
    blame TARGET --input X   the training rows that most caused an output
    seeds TARGET -n K        build K seeds; report what flips between them
    test [TARGET...]         build what is stale, run the specs (`N passed, N failed`)
    lock [TARGET...]         release-build, then write s2build.lock
    ci [--frozen]            release builds, specs, lock check, reports (JUnit, JSON, Markdown)
    verify [TARGET...]       rebuild from scratch and compare with s2build.lock
    watch [TARGET...]        build, then rebuild on every saved change until Ctrl-C

Errors print `LOCATION: MESSAGE (HINT)` on stderr, no traceback unless -v; exit codes are
listed in s2build/errors.py and README.md. This module imports only the standard library and
the no-op path's modules; torch and friends load only when something is trained or run.
"""

import argparse
import json
import os
import signal
import sys

from s2build import __version__
from s2build import errors
from s2build.errors import S2Error


def _load(args):
    from s2build.project import config
    path = args.file or config.find(args.directory)
    if path is None:
        raise errors.ConfigError(f"no {config.CONFIG_NAME} in {os.path.abspath(args.directory or '.')} "
                                 "or any parent folder",
                                 hint="create one (see s2build.yaml.example) or pass -f FILE")
    path = os.path.abspath(path)
    os.chdir(os.path.dirname(path))          # every path we print is relative to the project
    project = config.load(path)
    return project


def _reporter(args):
    from s2build.report import console as report
    return report.Json() if getattr(args, "json", False) else report.Console(verbose=args.verbose)


def cmd_build(args):
    from s2build.engine import runner
    project = _load(args)
    rep = _reporter(args)
    try:
        runner.build(project, args.targets, rep, wait=not args.no_wait,
                     mode="dev" if args.dev and not args.release else "release")
    finally:
        rep.finish()
    return errors.OK


def cmd_status(args):
    from s2build.engine import runner
    project = _load(args)
    steps, state = runner.status(project, args.targets)
    stale = [s for s in steps if s.action != "up-to-date"]
    if args.json:
        json.dump({"stale": [s.target.name for s in stale],
                   "targets": [{"name": s.target.name, "action": s.action, "key": s.inputs.key,
                                "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]}
                               for s in steps]}, sys.stdout, indent=2)
        print()
    else:
        if state.warning:
            print(f"s2build: warning: {state.warning}", file=sys.stderr)
        for s in steps:
            if s.action == "up-to-date":
                print(f"{s.target.name}: up to date")
            else:
                how = "restorable from cache" if s.action == "restore" else "needs a build"
                print(f"{s.target.name}: stale, {how} ({s.reasons[0].text}"
                      + (f"; +{len(s.reasons) - 1} more" if len(s.reasons) > 1 else "") + ")")
    return errors.STALE if stale else errors.OK


def cmd_explain(args):
    from s2build.engine import runner
    project = _load(args)
    steps, _state = runner.status(project, args.targets)
    wanted = set(args.targets)
    out = []
    for s in steps:
        if s.target.name not in wanted:
            continue
        if args.json:
            out.append({"name": s.target.name, "action": s.action, "key": s.inputs.key,
                        "reasons": [{"kind": r.kind, "text": r.text} for r in s.reasons]})
            continue
        if not s.reasons:
            print(f"{s.target.name}: up to date (build key {s.inputs.key[:12]}, "
                  f"output {s.target.config['output']})")
            continue
        verb = "will be restored from cache" if s.action == "restore" else "will be built"
        print(f"{s.target.name} {verb} because:")
        old_sources = (_state.targets.get(s.target.name) or {}).get("sources", {})
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


def cmd_lint(args):
    import numpy as np

    from s2build.data import dataset as data
    from s2build.data.shards import ShardStore
    from s2build.project import graph
    from s2build.debug import lint
    from s2build.report import console as report
    from s2build.engine import runner
    from s2build.store.local import Cache
    from s2build.errors import DataError
    project = _load(args)
    wanted = args.targets or list(project.targets)
    graph.order(project, wanted)                    # unknown names: did-you-mean error
    steps, _state = runner.status(project, wanted)
    diags = []
    for s in steps:
        if s.target.name in wanted:
            diags += lint.scan_nonfinite(s.target, list(s.inputs.sources) + list(s.inputs.holdout))
    try:
        runner.build(project, wanted, report.Console(verbose=args.verbose, stream=sys.stderr))
    except DataError as e:
        if not any(d.check == "non-finite" for d in diags):
            diags.append(lint.Diagnostic(e.location or "?", "error", "data", e.message))
        return _print_lint(args, lint.sort(diags), skipped="the data does not load")
    steps, _state = runner.status(project, wanted)
    cache = Cache(project.state_dir)
    for s in steps:
        if s.target.name not in wanted:
            continue
        ds = data.load_dataset(s.target, s.inputs, ShardStore(project.state_dir))
        path = os.path.join(cache.entry_dir(s.inputs.key), "dynamics.npz")
        dyn = dict(np.load(path, allow_pickle=False)) if os.path.exists(path) else None
        progress = (lambda f, k: print(f"{s.target.name}: fold {f}/{k} trained", file=sys.stderr)) \
            if args.folds else None
        diags += lint.run(s.target, ds, dyn, s.target.loc("sources") or s.target.name,
                          folds=args.folds, progress=progress)
    return _print_lint(args, lint.sort(diags))


def _print_lint(args, diags, skipped=None):
    from s2build.debug import lint
    counts = {sev: sum(d.severity == sev for d in diags) for sev in lint.SEVERITIES}
    if args.json:
        json.dump({"diagnostics": [d.as_dict() for d in diags], "counts": counts,
                   "skipped": skipped}, sys.stdout, indent=2)
        print()
    else:
        for d in diags:
            print(d)
        if skipped:
            print(f"lint: model-based checks skipped: {skipped}")
        print(f"lint: {counts['error']} errors, {counts['warning']} warnings, {counts['note']} notes")
    if args.fail_on and any(lint.SEVERITIES.index(d.severity) >= lint.SEVERITIES.index(args.fail_on)
                            for d in diags):
        return errors.LINT
    return errors.OK


def _dynamics(project, step):
    import numpy as np

    from s2build.store.local import Cache
    path = os.path.join(Cache(project.state_dir).entry_dir(step.inputs.key), "dynamics.npz")
    if not os.path.exists(path):
        raise errors.BuildError(f"no training dynamics recorded for {step.target.name}",
                                hint=f"rebuild it: s2build clean {step.target.name} && s2build build")
    return dict(np.load(path, allow_pickle=False))


def _query(project, step, dyn, text):
    """(row index or None, x or None, shown name): a dataset origin, or a file of inputs."""
    origins = [str(o) for o in dyn["origins"]]
    if text in origins:
        return origins.index(text), None, text
    from s2build.debug import predict
    rel, _, line = text.rpartition(":") if text.rpartition(":")[2].isdigit() else (text, "", "")
    path = os.path.join(project.root, rel)
    if not os.path.isfile(path):
        raise errors.UsageError(f"--input {text}: neither a row of the dataset nor a file",
                                hint="give an origin such as data/a.csv:12, or a file of inputs")
    rows = predict.rows_for_target(step.target, path)
    if line:
        rows = [r for r in rows if r[0] == f"{os.path.relpath(path)}:{line}"]
    if not rows:
        raise errors.UsageError(f"--input {text}: no such row")
    import numpy as np
    x = np.asarray(rows[0][1], dtype=np.float32).reshape([1] + _input_shape(step))
    return None, x, rows[0][0]


def _input_shape(step):
    from s2build.compile.artifact import Artifact
    return Artifact(step.target.output).row_shape


def _final_module(project, step, dyn):
    import torch

    from s2build.compile import models
    from s2build.store.local import Cache
    shape = tuple(_input_shape(step))
    net = models.build(step.target, shape, dyn["logits"].shape[1], torch.zeros((2,) + shape))
    path = os.path.join(Cache(project.state_dir).entry_dir(step.inputs.key), "weights.pt")
    net.load_state_dict(torch.load(path, weights_only=True))
    return net.eval()


def cmd_blame(args):
    from s2build.debug import blame
    from s2build.project import graph
    from s2build.report import console as report
    from s2build.engine import runner
    from s2build.debug import seeds
    project = _load(args)
    graph.order(project, [args.target])
    target = project.targets[args.target]
    if target.config["loader"]["task"] != "classification":
        raise errors.UsageError("blame explains classification targets only (for now)")
    runner.build(project, [args.target], report.Console(stream=sys.stderr))
    if args.spec:
        from s2build.specs import parse as specs
        args.input = specs.spec_input_origin(target, args.spec)
    steps, _state = runner.status(project, [args.target])
    step = [s for s in steps if s.target.name == args.target][0]
    dyn = _dynamics(project, step)
    row, x, shown = _query(project, step, dyn, args.input)
    module = _final_module(project, step, dyn) if row is None else None
    try:
        top, pred, p, exact = blame.blame(dyn, [str(o) for o in dyn["origins"]], row, module, x,
                                          args.k)
    except ValueError as e:
        raise errors.BuildError(str(e)) from None
    classes = [str(c) for c in dyn["classes"]]
    result = {"query": shown, "prediction": classes[pred], "probability": p, "exact": exact,
              "rows": [{"origin": o, "label": classes[l], "influence": sc} for o, l, sc in top]}
    if args.seeds:
        per_seed = []
        for variant, key in seeds.build(project, target, args.seeds, report.Console(stream=sys.stderr)):
            vd = seeds.load_dynamics(project, key)
            vmod = None
            if row is None:
                vstep = runner.Step(variant, type("I", (), {"key": key})(), [], "up-to-date")
                vmod = _final_module(project, vstep, vd)
            vt, _p, _pp, _e = blame.blame(vd, [str(o) for o in vd["origins"]], row, vmod, x, args.k)
            per_seed.append([o for o, _l, _s in vt])
        sets = [set(t) for t in per_seed]
        pairs = [len(a & b) / args.k for i, a in enumerate(sets) for b in sets[i + 1:]]
        result["seeds"] = {"k": args.seeds, "mean_overlap": sum(pairs) / len(pairs) if pairs else 1.0,
                           "in_every_seed": sorted(set.intersection(*sets)) if sets else []}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return errors.OK
    label = f", labelled {classes[int(dyn['y'][row])]}" if row is not None else ""
    print(f"{shown}: predicted {classes[pred]} (p={p:.2f}){label}")
    how = "its own gradients at" if exact else "the final network's gradient against"
    print(f"training rows that most pushed it to {classes[pred]} "
          f"(last-layer TracIn, {how} {len(dyn['ckpt_lr'])} checkpoints):")
    for r in result["rows"]:
        print(f"  {r['origin']}: label {r['label']}, influence {r['influence']:.3g}")
    if args.seeds:
        sd = result["seeds"]
        print(f"stability over {args.seeds} seeds: mean top-{args.k} overlap {sd['mean_overlap']:.2f}; "
              f"in every seed: {', '.join(sd['in_every_seed']) or 'none'}")
    return errors.OK


def cmd_seeds(args):
    from s2build.project import graph
    from s2build.report import console as report
    from s2build.debug import seeds
    project = _load(args)
    graph.order(project, [args.target])
    target = project.targets[args.target]
    if target.config["loader"]["task"] != "classification":
        raise errors.UsageError("seeds reports on classification targets only (for now)")
    built = seeds.build(project, target, args.n, report.Console(stream=sys.stderr))
    dyns = [seeds.load_dynamics(project, key) for _v, key in built]
    rep = seeds.compare(dyns, [v.config["train"]["seed"] for v, _k in built])
    rep["specs"] = _seed_specs(project, [v for v, _k in built])
    if args.json:
        json.dump(rep, sys.stdout, indent=2)
        print()
        return errors.OK
    errs = ", ".join(f"seed {s}: {e:.1%}" for s, e in rep["error_rate"].items())
    print(f"{target.name}: {len(built)} seeds, holdout error {errs}")
    print(f"disagreement {rep['disagreement_rate']:.1%} of {rep['holdout_rows']} holdout rows "
          f"(mean error {rep['mean_error_rate']:.1%})")
    for r in rep["flipping_rows"][:20]:
        preds = ", ".join(f"{s}:{p}" for s, p in r["predictions"].items())
        print(f"  {r['origin']}: label {r['label']}, predicted by seed {preds}")
    if len(rep["flipping_rows"]) > 20:
        print(f"  ... and {len(rep['flipping_rows']) - 20} more")
    for name, rate in rep["specs"].items():
        print(f"spec {name}: passes under {rate:.0%} of seeds")
    return errors.OK


def _seed_specs(project, variants):
    """{spec name: pass rate over the variants}, when the target has specs."""
    try:
        from s2build.specs import run as specs
    except ImportError:
        return {}
    if not hasattr(specs, "pass_rates"):
        return {}
    return specs.pass_rates(project, variants)


def cmd_graph(args):
    from s2build.project import graph
    project = _load(args)
    graph.check(project)
    if args.dot:
        print(graph.to_dot(project))
    elif args.json:
        json.dump({n: {"deps": t.config["deps"], "output": t.config["output"]}
                   for n, t in project.targets.items()}, sys.stdout, indent=2)
        print()
    else:
        for name in graph.order(project):
            deps = project.targets[name].config["deps"]
            print(name + (f" <- {', '.join(deps)}" if deps else ""))
    return errors.OK


def cmd_predict(args):
    from s2build.debug import predict
    project = _load(args)
    if args.target not in project.targets:
        from s2build.project import graph
        graph.order(project, [args.target])            # raises the did-you-mean error
    path = os.path.join(args.cwd, args.input)
    results = predict.predict(project.targets[args.target], path)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            p = f" (p={r['probability']:.3f})" if "probability" in r else ""
            print(f"{r['origin']}: {r['prediction']}{p}")
    return errors.OK


def cmd_clean(args):
    import shutil

    from s2build.project import graph
    from s2build.engine.locking import BuildLock
    project = _load(args)
    graph.order(project, args.targets)                 # unknown names: did-you-mean error
    names = args.targets or list(project.targets)       # only these, not their dependencies
    removed = []
    os.makedirs(project.state_dir, exist_ok=True)
    with BuildLock(project.state_dir, "s2build clean", wait=True,
                   on_wait=lambda m: print(f"s2build: {m}", file=sys.stderr)):
        for name in names:
            out = project.targets[name].output
            for p in (out, out + ".json"):
                if os.path.exists(p):
                    os.unlink(p)
                    removed.append(os.path.relpath(p))
        if args.cache:
            for entry in os.listdir(project.state_dir):
                if entry in ("lock", "lock.owner"):
                    continue
                p = os.path.join(project.state_dir, entry)
                shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            removed.append(os.path.relpath(project.state_dir) + "/ (cache and state)")
    for p in removed:
        print(f"removed {p}")
    if not removed:
        print("nothing to clean")
    return errors.OK


def _console(args):
    from s2build.report import console as report
    return report.Console(verbose=args.verbose)


def _out_path(args, path):
    """A report path from the command line, relative to where s2build was started."""
    return os.path.join(args.cwd, path) if path else None


def cmd_test(args):
    from s2build.release import pipeline
    project = _load(args)
    return pipeline.test(project, args.targets, _console(args),
                         junit=_out_path(args, args.junit), as_json=args.json)


def cmd_lock(args):
    from s2build.release import pipeline
    project = _load(args)
    return pipeline.lock(project, args.targets, _console(args))


def cmd_ci(args):
    from s2build.release import pipeline
    project = _load(args)
    return pipeline.ci(project, args.targets, _console(args), frozen=args.frozen,
                       junit=_out_path(args, args.junit), json_path=_out_path(args, args.json),
                       md_path=_out_path(args, args.markdown))


def cmd_watch(args):
    from s2build.project import graph
    from s2build.engine import watch
    project = _load(args)
    graph.order(project, args.targets)                 # unknown names: did-you-mean error
    return watch.watch(project, args.targets, mode="release" if args.release else "dev",
                       debounce=args.debounce, verbose=args.verbose)


def cmd_verify(args):
    from s2build.release import pipeline
    project = _load(args)
    return pipeline.verify(project, args.targets, keep=args.keep)


def parser():
    p = argparse.ArgumentParser(prog="s2build", description="Build neural networks from data, "
                                "like make builds programs from source.")
    p.add_argument("--version", action="version", version=f"s2build {__version__}")
    p.add_argument("-f", "--file", help="path of s2build.yaml (default: search upwards)")
    p.add_argument("-C", "--directory", help="run as if started in DIR")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("status", help="list stale targets (exit 1 if any)")
    s.add_argument("targets", nargs="*", metavar="TARGET")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    e = sub.add_parser("explain", help="why targets are stale")
    e.add_argument("targets", nargs="+", metavar="TARGET")
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-rows", action="store_true", help="do not list the rows that changed")
    e.set_defaults(func=cmd_explain)

    g = sub.add_parser("graph", help="show the target graph")
    g.add_argument("--dot", action="store_true", help="Graphviz output")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_graph)

    pr = sub.add_parser("predict", help="run an artifact on rows of a file")
    pr.add_argument("target", metavar="TARGET")
    pr.add_argument("input", metavar="FILE", help=".csv, .json or .jsonl")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    li = sub.add_parser("lint", help="data diagnostics at file:line (duplicates, label errors, ...)")
    li.add_argument("targets", nargs="*", metavar="TARGET")
    li.add_argument("--json", action="store_true")
    li.add_argument("--fail-on", choices=("note", "warning", "error"),
                    help="exit 11 when a diagnostic at or above this level is found")
    li.add_argument("--folds", type=int, default=0, metavar="K",
                    help="also train K models for out-of-sample label-error detection (cleanlab)")
    li.set_defaults(func=cmd_lint)

    bl = sub.add_parser("blame", help="training rows that most caused an output")
    bl.add_argument("target", metavar="TARGET")
    q = bl.add_mutually_exclusive_group(required=True)
    q.add_argument("--input", metavar="ROW_OR_FILE",
                   help="a dataset row (data/a.csv:12, data/3/0042.png) or a file of inputs")
    q.add_argument("--spec", metavar="NAME", help="the input of an example spec")
    bl.add_argument("-k", type=int, default=10, help="how many rows (default 10)")
    bl.add_argument("--seeds", type=int, default=0, metavar="K",
                    help="also build K seeds and report how stable the ranking is")
    bl.add_argument("--json", action="store_true")
    bl.set_defaults(func=cmd_blame)

    sd = sub.add_parser("seeds", help="build K seeds; report what flips between them")
    sd.add_argument("target", metavar="TARGET")
    sd.add_argument("-n", type=int, default=3, help="number of seeds (default 3)")
    sd.add_argument("--json", action="store_true")
    sd.set_defaults(func=cmd_seeds)

    c = sub.add_parser("clean", help="remove outputs")
    c.add_argument("targets", nargs="*", metavar="TARGET")
    c.add_argument("--cache", action="store_true", help="also remove .s2build/ (cache, state)")
    c.set_defaults(func=cmd_clean)

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
    ci.set_defaults(func=cmd_ci)

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
    w.set_defaults(func=cmd_watch)
    return p


def _on_sigterm(signum, frame):
    raise errors.Interrupted(errors.TERMINATED)


def main(argv=None):
    args = parser().parse_args(argv)
    args.cwd = os.getcwd()
    if args.directory:
        try:
            os.chdir(args.directory)
        except OSError as e:
            print(f"s2build: error: -C {args.directory}: {e.strerror}", file=sys.stderr)
            return errors.USAGE
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except S2Error as e:
        if args.verbose:
            import traceback
            traceback.print_exc()
        text = str(e)
        print(text if e.location else f"s2build: error: {text}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("s2build: interrupted; nothing was recorded for the unfinished target",
              file=sys.stderr)
        return errors.INTERRUPTED
    except errors.Interrupted as e:
        print("s2build: terminated; nothing was recorded for the unfinished target",
              file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return errors.OK
    except Exception as e:
        if args.verbose:
            import traceback
            traceback.print_exc()
        print(f"s2build: internal error: {type(e).__name__}: {e} (run with -v for a traceback, "
              "and please report it)", file=sys.stderr)
        return errors.INTERNAL

"""Debugging commands: lint, blame, seeds, predict. Thin: the work is in s2build/debug/."""

import json
import os
import sys

from s2build import errors
from s2build.cli import common


def cmd_lint(args):
    from s2build.debug import budget, lint, lint_run
    project = common.load(args)
    digests = {}
    diags, skipped = lint_run.run(project, args.targets or list(project.targets),
                                  folds=args.folds, verbose=args.verbose, digests=digests)
    if args.apply is not None:
        return _apply_fixes(project, diags, args, digests)
    counts = {sev: sum(d.severity == sev for d in diags) for sev in lint.SEVERITIES}
    if args.json:
        json.dump({"diagnostics": [d.as_dict() for d in diags], "counts": counts,
                   "skipped": skipped}, sys.stdout, indent=2)
        print()
    else:
        shown, left = budget.select(diags, args.max)
        for d in shown:
            print(d)
            fix = _fix_of(project, d) if args.fix else None
            if fix is not None:
                print(f"  fix: {fix.describe(project.targets[d.target])}")
        for line in budget.summary_lines(left):
            print(line)
        if skipped:
            print(f"lint: model-based checks skipped: {skipped}")
        print(f"lint: {counts['error']} errors, {counts['warning']} warnings, {counts['note']} notes")
    if args.fail_on != "never" and any(
            lint.SEVERITIES.index(d.severity) >= lint.SEVERITIES.index(args.fail_on) for d in diags):
        return errors.LINT
    return errors.OK


def _fix_of(project, d):
    from s2build.debug import fixes
    if d.fix is None or d.target is None:
        return None
    return fixes.of(project.targets[d.target], d.origin, *d.fix)


def _apply_fixes(project, diags, args, digests):
    """`lint --apply [ORIGIN...]`: perform the fixes (of the diagnostics at ORIGIN, or all)."""
    from s2build.debug import fixes
    chosen = [(d, f) for d in diags if (f := _fix_of(project, d)) is not None
              and (not args.apply or d.origin in args.apply)]
    unknown = sorted(set(args.apply) - {d.origin for d, _ in chosen})
    if unknown:
        raise errors.UsageError(f"--apply {unknown[0]}: no fixable diagnostic there "
                                "(run `s2build lint --fix` to list them)")
    by_target = {}
    for d, f in chosen:
        by_target.setdefault(d.target, []).append(f)
    failed = False
    for name, group in sorted(by_target.items()):
        t = project.targets[name]
        done, skipped = fixes.apply(t, group, digests)
        for f, _ in done:
            print(f"{f.origin}: fixed: {f.describe(t)}")
        for f, why in skipped:
            print(f"{f.origin}: not fixed: {why}", file=sys.stderr)
            failed = True
    print(f"lint: {sum(len(g) for g in by_target.values())} fixes" if chosen else
          "lint: nothing to fix")
    return errors.LINT if failed else errors.OK


def _classification_target(project, name, what):
    from s2build.project import graph
    graph.order(project, [name])                    # unknown names: did-you-mean error
    target = project.targets[name]
    if target.config["loader"]["task"] != "classification":
        raise errors.UsageError(f"{what} classification targets only (for now)")
    return target


def cmd_blame(args):
    from s2build.debug import query
    from s2build.engine import runner
    from s2build.project import graph
    project = common.load(args)
    graph.order(project, [args.target])             # unknown names: did-you-mean error
    target = project.targets[args.target]
    gate = query.gate_spec(target, args.spec) if args.spec is not None else None
    if args.spec is not None and gate is None:
        query.example_spec(target, args.spec)          # a wrong name fails before building
    runner.build(project, [args.target], common.console(args, sys.stderr))
    steps, _state = runner.status(project, [args.target])
    key = [s for s in steps if s.target.name == args.target][0].inputs.key
    if gate is not None:
        return _blame_gate(query.gate(project, target, key, args.spec, k=args.k), args)
    result, dyn, row = query.run(project, target, key, text=args.input, spec=args.spec, k=args.k,
                                 seeds=args.seeds, reporter=common.console(args, sys.stderr),
                                 output=args.output)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return errors.OK
    task = result["task"]
    label = f", labelled {query.label_text(dyn, query.output_names(target, dyn), row)}" \
        if row is not None else ""
    how = "its own gradients at" if result["exact"] else "the final network's gradient against"
    where = f"(last-layer TracIn, {how} {len(dyn['ckpt_lr'])} checkpoints)"
    if task == "classification":
        print(f"{result['query']}: predicted {result['prediction']} "
              f"(p={result['probability']:.2f}){label}")
        print(f"training rows that most pushed it to {result['prediction']} {where}:")
    elif task == "multilabel":
        print(f"{result['query']}: predicted [{', '.join(result['prediction'])}]{label}")
        print(f"training rows that most pushed its outputs the way they went {where}:")
    else:
        print(f"{result['query']}: predicted {result['output']} = {result['prediction']:.4g}{label}")
        print(f"training rows that most raised it {where}:")
    for r in result["rows"]:
        print(f"  {r['origin']}: label {r['label']}, influence {r['influence']:.3g}")
    if task == "regression":
        print("training rows that most lowered it:")
        for r in result["lowering"]:
            print(f"  {r['origin']}: label {r['label']}, influence {r['influence']:.3g}")
    if args.seeds:
        sd = result["seeds"]
        print(f"stability over {args.seeds} seeds: mean top-{args.k} overlap {sd['mean_overlap']:.2f}; "
              f"in every seed: {', '.join(sd['in_every_seed']) or 'none'}")
    return errors.OK


def _blame_gate(result, args):
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return errors.OK
    bad = result["failing"]
    what = "the 10% largest errors" if result["task"] == "regression" else "wrong"
    print(f"gate '{result['gate']}': {len(bad)} holdout rows count against it ({what})"
          + (": " + ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
             if bad else ""))
    if not bad:
        return errors.OK
    print("training rows that most raised their loss (last-layer TracIn, summed over them):")
    for r in result["rows"]:
        print(f"  {r['origin']}: label {r['label']}, harm {r['harm']:.3g}, among the top 10 "
              f"for {r['top_for']} of {len(bad)}")
    return errors.OK


def cmd_seeds(args):
    from s2build.debug import seeds
    project = common.load(args)
    target = _classification_target(project, args.target, "seeds reports on")
    built = seeds.build(project, target, args.n, common.console(args, sys.stderr))
    dyns = [seeds.load_dynamics(project, key) for _v, key in built]
    rep = seeds.compare(dyns, [v.config["train"]["seed"] for v, _k in built])
    rep["specs"] = seeds.spec_pass_rates(project, [v for v, _k in built])
    seeds.save(project, target, rep, built)             # for `s2build report`
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
    for name, s in rep["specs"].items():
        print(f"spec {name}: passes under {s['passed']} of {s['seeds']} seeds ({s['rate']:.0%})")
    return errors.OK


def cmd_predict(args):
    from s2build.debug import predict
    project = common.load(args)
    if args.target not in project.targets:
        from s2build.project import graph
        graph.order(project, [args.target])            # raises the did-you-mean error
    results = predict.predict(project.targets[args.target], os.path.join(args.cwd, args.input))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        for r in results:
            p = f" (p={r['probability']:.3f})" if "probability" in r else ""
            print(f"{r['origin']}: {r['prediction']}{p}")
    return errors.OK


def add_parsers(sub):
    pr = sub.add_parser("predict", help="run an artifact on rows of a file")
    pr.add_argument("target", metavar="TARGET")
    pr.add_argument("input", metavar="FILE", help=".csv, .json or .jsonl")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    li = sub.add_parser("lint", help="data diagnostics at file:line (duplicates, label errors, ...)")
    li.add_argument("targets", nargs="*", metavar="TARGET")
    li.add_argument("--json", action="store_true")
    li.add_argument("--fail-on", choices=("note", "warning", "error", "never"), default="error",
                    help="exit 11 when a diagnostic at or above this level is found "
                         "(default: error, as a compiler; never: always exit 0)")
    li.add_argument("--max", type=common.count_arg(0, 1), default=20, metavar="N",
                    help="print at most N diagnostics per check, strongest first, in file "
                         "order (default 20; 0: all; errors are always printed)")
    li.add_argument("--folds", type=common.count_arg(0, 2), default=0, metavar="K",
                    help="also train K models for out-of-sample label-error detection (cleanlab)")
    li.add_argument("--fix", action="store_true",
                    help="print under each diagnostic the edit that resolves it (relabel a row "
                         "or move an image to its class folder; drop a duplicate)")
    li.add_argument("--apply", nargs="*", metavar="ORIGIN",
                    help="perform the fixes: those at ORIGIN (data/a.csv:12, data/3/x.png), "
                         "or all when none is named; each file rewritten atomically")
    li.set_defaults(func=cmd_lint)

    bl = sub.add_parser("blame", help="training rows that most caused an output")
    bl.add_argument("target", metavar="TARGET")
    q = bl.add_mutually_exclusive_group(required=True)
    q.add_argument("--input", metavar="ROW_OR_FILE",
                   help="a dataset row (data/a.csv:12, data/3/0042.png) or a file of inputs")
    q.add_argument("--spec", metavar="NAME",
                   help="the input of an example spec, or a gate: the holdout rows it counts "
                        "against and the training rows that most raised their loss")
    bl.add_argument("--output", metavar="NAME",
                    help="regression: which output to explain (default: the first)")
    bl.add_argument("-k", type=common.count_arg(low=1), default=10, help="how many rows (default 10)")
    bl.add_argument("--seeds", type=common.count_arg(0, 2), default=0, metavar="K",
                    help="also build K seeds and report how stable the ranking is")
    bl.add_argument("--json", action="store_true")
    bl.set_defaults(func=cmd_blame)

    sd = sub.add_parser("seeds", help="build K seeds; report what flips between them")
    sd.add_argument("target", metavar="TARGET")
    sd.add_argument("-n", type=common.count_arg(low=1), default=3, help="number of seeds (default 3)")
    sd.add_argument("--json", action="store_true")
    sd.set_defaults(func=cmd_seeds)

"""The `s2build` command line.

    s2build [-f FILE] [-C DIR] [-v] [--no-server] [--json] COMMAND ...

The global flags may also come after the command, as in git and cargo: `s2build build -v` is
`s2build -v build`. `--json` is accepted only by the commands that offer it.

    build [TARGET...]        build what is stale, dependencies first
    status [TARGET...]       list stale targets (exit 1 if any)
    explain TARGET...        why each target is stale, in words
    graph                    the target graph (text, --dot or --json)
    predict TARGET FILE      run the artifact in onnxruntime on rows of a csv/json/jsonl file
    clean [TARGET...]        remove the outputs s2build wrote (--cache: also .s2build/)
    gc [--max-size SIZE]     remove least recently used cache entries over the cap
    lint [TARGET...]         data diagnostics at file:line (exit 11 on errors)
    blame TARGET --input X   the training rows that most caused an output
    seeds TARGET -n K        build K seeds; report what flips between them
    test [TARGET...]         build what is stale, run the specs (`N passed, N failed`)
    lock [TARGET...]         release-build, then write s2build.lock
    ci [--frozen]            release builds, specs, lock check, reports (JUnit, JSON, Markdown)
    verify [TARGET...]       rebuild from scratch and compare with s2build.lock
    report [TARGET...]       build what is stale, write one offline HTML report (-o FILE)
    watch [TARGET...]        build, then rebuild on every saved change until Ctrl-C
    shutdown                 stop the project's build server (s2build/server/)
    completion bash|zsh      a shell completion script: source <(s2build completion bash)
    init [DIR]               write a commented s2build.yaml for the data in DIR
    schema [-o FILE]         the JSON Schema of s2build.yaml (editor completion)

build, test, lint, blame and predict run in the project's warm build server when there is work
to do (s2build/server/client.py says when not; --no-server or S2BUILD_NO_SERVER=1 turn it off).

The commands live in cli/build.py (build status explain graph clean gc), cli/debug.py (lint
blame seeds predict), cli/release.py (test lock ci verify watch report) and cli/start.py (init
schema); each is thin and imports
the modules that do the work inside its function.

Errors print `LOCATION: MESSAGE (HINT)` on stderr, no traceback unless -v; exit codes are
listed in s2build/errors.py and README.md. This module imports only the standard library and
the no-op path's modules; torch and friends load only when something is trained or run.
"""

import argparse
import os
import signal
import sys

from s2build import __version__
from s2build import errors
from s2build.cli import build, completion, debug, release, start
from s2build.errors import S2Error

SERVED = ("build", "test", "lint", "blame", "predict")     # = server.client.COMMANDS


GLOBAL_FLAGS = (                                # (flags, argparse keywords): before or after
    (("-f", "--file"), dict(metavar="FILE", help="path of s2build.yaml (default: search upwards)")),
    (("-C", "--directory"), dict(metavar="DIR", help="run as if started in DIR")),
    (("-v", "--verbose"), dict(action="store_true", help="more detail; tracebacks on errors")),
    (("--no-server",), dict(action="store_true",
                            help="run in this process, not in the project's warm build server")),
)

EXAMPLES = {                                     # the epilog of each command's --help
    "build": ["s2build build", "s2build build wine --dev -v", "s2build -C examples/wine build --json"],
    "status": ["s2build status", "s2build status --json"],
    "explain": ["s2build explain wine", "s2build explain wine --no-rows --json"],
    "graph": ["s2build graph", "s2build graph --dot | dot -Tsvg > graph.svg"],
    "clean": ["s2build clean wine", "s2build clean --cache"],
    "gc": ["s2build gc --max-size 500M --dry-run"],
    "predict": ["s2build predict wine data/wine-1.csv", "s2build predict wine rows.jsonl --json"],
    "lint": ["s2build lint", "s2build lint wine --folds 5",
             "s2build lint --fail-on never --max 0     # everything, exit 0"],
    "blame": ["s2build blame wine --input data/wine-1.csv:12", "s2build blame digits --spec zero -k 5"],
    "seeds": ["s2build seeds wine -n 5    # `s2build report` shows its last run"],
    "test": ["s2build test", "s2build test wine --junit specs.xml"],
    "lock": ["s2build lock"],
    "ci": ["s2build ci --frozen --junit specs.xml --markdown summary.md",
           "s2build ci --html report.html"],
    "verify": ["s2build verify wine"],
    "report": ["s2build report", "s2build report wine -o wine.html",
               "s2build -C examples/wine report && xdg-open examples/wine/build/report.html"],
    "watch": ["s2build watch wine", "s2build watch --release --debounce 1",
              "s2build watch --report build/report.html    # the page kept current"],
    "shutdown": ["s2build shutdown"],
    "completion": ["source <(s2build completion bash)     # in ~/.bashrc",
                   "source <(s2build completion zsh)      # in ~/.zshrc"],
    "init": ["s2build init", "s2build init data/flowers --label species"],
    "schema": ["s2build schema -o s2build.schema.json"],
}

EXIT_CODES = ("exit codes: 0 ok, 1 stale (status), 2 usage, 3 config, 4 data, 5 build, 6 verify, "
              "7 spec, 8 lock stale, 9 mismatch, 10 locked, 11 lint, 70 internal, 130 Ctrl-C "
              "(s2build/errors.py)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a suggestion for a mistyped command (`biuld`: did you mean 'build'?)."""

    def error(self, message):
        import difflib
        import re
        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if m and self.prog == "s2build":
            known = re.findall(r"'([^']*)'", m.group(2))
            close = difflib.get_close_matches(m.group(1), known, n=1)
            message = f"unknown command '{m.group(1)}' " + (
                f"(did you mean '{close[0]}'?)" if close else f"(commands: {', '.join(known)})")
        super().error(message)


def parser():
    p = _Parser(prog="s2build", description="Build neural networks from data, "
                                "like make builds programs from source.",
                                epilog="example: s2build -C examples/wine build -v\n" + EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"s2build {__version__}")
    for flags, kw in GLOBAL_FLAGS:
        p.add_argument(*flags, **kw)
    p.add_argument("--json", dest="global_json", action="store_true",
                   help="print results as JSON (the commands that offer --json)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    build.add_parsers(sub)
    debug.add_parsers(sub)
    release.add_parsers(sub)
    completion.add_parsers(sub)
    start.add_parsers(sub)
    sd = sub.add_parser("shutdown", help="stop the project's build server")
    sd.set_defaults(func=lambda args: _server().cmd_shutdown(args))
    for name, sp in sub.choices.items():         # also after the command: `build -v`
        group = sp.add_argument_group("global options (also accepted before the command)")
        for flags, kw in GLOBAL_FLAGS:           # SUPPRESS: an absent flag keeps the global value
            group.add_argument(*flags, **kw, default=argparse.SUPPRESS)
        sp.formatter_class = argparse.RawDescriptionHelpFormatter
        sp.epilog = "\n".join(["examples:", *(f"  {e}" for e in EXAMPLES.get(name, ()))])
    return p


def _offers_json(p, command):
    """Whether `command` has a boolean --json flag (ci's --json takes a FILE)."""
    sp = p._subparsers._group_actions[0].choices[command]
    return any("--json" in a.option_strings and a.nargs == 0 for a in sp._actions)


def _server():
    from s2build.server import client
    return client


def _on_sigterm(signum, frame):
    raise errors.Interrupted(errors.TERMINATED)


_SIGINTS = []


def _on_sigint(signum, frame):
    """Python's own Ctrl-C handler, remembering that it ran (see main's `except Exception`)."""
    _SIGINTS.append(signum)
    raise KeyboardInterrupt


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    args.parser = p                                       # `completion` reads the parser
    if args.global_json:                                  # `s2build --json status`
        if not _offers_json(p, args.command):
            p.error(f"--json: `{args.command}` has no JSON output"
                    + (" (ci writes JSON to a file: ci --json FILE)" if args.command == "ci" else ""))
        args.json = True
    args.start_cwd = os.getcwd()                          # what the build server is told
    if args.directory:
        try:
            os.chdir(args.directory)
        except OSError as e:
            print(f"s2build: error: -C {args.directory}: {e.strerror}", file=sys.stderr)
            return errors.USAGE
    args.cwd = os.getcwd()            # file arguments and -f are relative to -C DIR, as in git
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        if args.command in SERVED:                          # the one dispatch to the server
            rc = _server().dispatch(sys.argv[1:] if argv is None else argv, args)
            if rc is not None:
                return rc
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
        if _SIGINTS:            # Ctrl-C inside a C extension's import (onnxruntime raises
            print("s2build: interrupted; nothing was recorded for the unfinished target",
                  file=sys.stderr)                    # ImportError then): an interrupt
            return errors.INTERRUPTED
        if args.verbose:
            import traceback
            traceback.print_exc()
        print(f"s2build: internal error: {type(e).__name__}: {e} (run with -v for a traceback, "
              "and please report it)", file=sys.stderr)
        return errors.INTERNAL


def run():
    """The console entry point: `main()`, then exit. After a build that loaded torch, the
    interpreter's teardown (module and tensor destructors, 0.7 s at 1M rows) serves nothing:
    every file s2build writes is closed and renamed into place before `main` returns, and its
    locks are released by the kernel. So the streams are flushed and the process ends with
    os._exit; a process that never imported torch exits normally. Ctrl-C before `main`'s own
    handler is in place (while the parser is built) exits 130 too, without a traceback. An
    interrupted process ends at once as well: its atomic writes need no teardown, and joining
    the data stage's threads at exit let the interrupt escape (exit -2)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print("s2build: interrupted", file=sys.stderr)
        code = errors.INTERRUPTED
    if "torch" not in sys.modules and code not in (errors.INTERRUPTED, errors.TERMINATED):
        sys.exit(code)
    errors.exit_now(code)


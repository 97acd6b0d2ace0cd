"""The `s2build` command line.

    s2build [-f FILE | -C DIR] [-v] COMMAND ...

    build [TARGET...]        build what is stale, dependencies first
    status [TARGET...]       list stale targets (exit 1 if any)
    explain TARGET...        why each target is stale, in words
    graph                    the target graph (text, --dot or --json)
    predict TARGET FILE      run the artifact in onnxruntime on rows of a csv/json/jsonl file
    clean [TARGET...]        remove the outputs s2build wrote (--cache: also .s2build/)
    gc [--max-size SIZE]     remove least recently used cache entries over the cap
    lint [TARGET...]         data diagnostics at file:line (--fail-on LEVEL for CI)
    blame TARGET --input X   the training rows that most caused an output
    seeds TARGET -n K        build K seeds; report what flips between them
    test [TARGET...]         build what is stale, run the specs (`N passed, N failed`)
    lock [TARGET...]         release-build, then write s2build.lock
    ci [--frozen]            release builds, specs, lock check, reports (JUnit, JSON, Markdown)
    verify [TARGET...]       rebuild from scratch and compare with s2build.lock
    watch [TARGET...]        build, then rebuild on every saved change until Ctrl-C
    shutdown                 stop the project's build server (s2build/server/)

build, test, lint, blame and predict run in the project's warm build server when there is work
to do (s2build/server/client.py says when not; --no-server or S2BUILD_NO_SERVER=1 turn it off).

The commands live in cli/build.py (build status explain graph clean gc), cli/debug.py (lint
blame seeds predict) and cli/release.py (test lock ci verify watch); each is thin and imports
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
from s2build.cli import build, debug, release
from s2build.errors import S2Error

SERVED = ("build", "test", "lint", "blame", "predict")     # = server.client.COMMANDS


def parser():
    p = argparse.ArgumentParser(prog="s2build", description="Build neural networks from data, "
                                "like make builds programs from source.")
    p.add_argument("--version", action="version", version=f"s2build {__version__}")
    p.add_argument("-f", "--file", help="path of s2build.yaml (default: search upwards)")
    p.add_argument("-C", "--directory", help="run as if started in DIR")
    p.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    p.add_argument("--no-server", action="store_true",
                   help="run in this process, not in the project's warm build server")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    build.add_parsers(sub)
    debug.add_parsers(sub)
    release.add_parsers(sub)
    for name in SERVED:                          # also after the command: `build --no-server`
        sub.choices[name].add_argument("--no-server", action="store_true",
                                       default=argparse.SUPPRESS,
                                       help="run in this process, not in the build server")
    sd = sub.add_parser("shutdown", help="stop the project's build server")
    sd.set_defaults(func=lambda args: _server().cmd_shutdown(args))
    return p


def _server():
    from s2build.server import client
    return client


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
    os._exit; a process that never imported torch exits normally."""
    code = main()
    if "torch" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


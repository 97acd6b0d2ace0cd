"""What every command needs: the project, a reporter, paths from the command line.

Standard library only (the no-op path); heavier modules are imported inside the commands.
"""

import os

from s2build import errors
from s2build.errors import UsageError


def load(args):
    """The Project of `-f FILE` or the nearest s2build.yaml; chdir into its folder, so every
    path s2build prints is relative to the project. `--nproc N` (args.nproc) replaces every
    target's train.nproc."""
    from s2build.project import config
    cwd = getattr(args, "cwd", None) or os.getcwd()       # after -C DIR
    path = os.path.join(cwd, args.file) if args.file else config.find(cwd)
    if path is None:
        raise errors.ConfigError(f"no {config.CONFIG_NAME} in {cwd} "
                                 "or any parent folder",
                                 hint="create one (see s2build.yaml.example) or pass -f FILE")
    path = os.path.abspath(path)
    os.chdir(os.path.dirname(path))
    project = config.load(path)
    if getattr(args, "nproc", None) is not None:          # --nproc N: every target's world
        for t in project.targets.values():
            t.config["train"]["nproc"] = args.nproc
    return project


def reporter(args):
    from s2build.report import console as report
    return report.Json() if getattr(args, "json", False) else report.Console(verbose=args.verbose)


def console(args, stream=None):
    from s2build.report import console as report
    return report.Console(verbose=args.verbose, stream=stream)


def out_path(args, path):
    """A report path from the command line, relative to where s2build was started (after -C). A path
    that is an existing folder, or whose parent is a file, is a UsageError (exit 2)."""
    if not path:
        return None
    full = os.path.join(args.cwd, path)
    if os.path.isdir(full):
        raise UsageError(f"report path '{path}' is a folder", None,
                         f"name a file, e.g. {os.path.join(path, 'report.xml')}")
    parent = os.path.dirname(os.path.abspath(full))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise UsageError(f"report path '{path}': '{parent}' is a file, not a folder")
    return full


def count_arg(off=None, low=1):
    """An argparse type: an integer >= `low`, or exactly `off` (the 'not asked for' value)."""
    import argparse

    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n != off and n < low:
            also = f" (or {off} for none)" if off is not None else ""
            raise argparse.ArgumentTypeError(f"must be at least {low}{also}, got {n}")
        return n
    return parse

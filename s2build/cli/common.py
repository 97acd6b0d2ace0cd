"""What every command needs: the project, a reporter, paths from the command line.

Standard library only (the no-op path); heavier modules are imported inside the commands.
"""

import os

from s2build import errors


def load(args):
    """The Project of `-f FILE` or the nearest s2build.yaml; chdir into its folder, so every
    path s2build prints is relative to the project."""
    from s2build.project import config
    path = args.file or config.find(args.directory)
    if path is None:
        raise errors.ConfigError(f"no {config.CONFIG_NAME} in {os.path.abspath(args.directory or '.')} "
                                 "or any parent folder",
                                 hint="create one (see s2build.yaml.example) or pass -f FILE")
    path = os.path.abspath(path)
    os.chdir(os.path.dirname(path))
    return config.load(path)


def reporter(args):
    from s2build.report import console as report
    return report.Json() if getattr(args, "json", False) else report.Console(verbose=args.verbose)


def console(args, stream=None):
    from s2build.report import console as report
    return report.Console(verbose=args.verbose, stream=stream)


def out_path(args, path):
    """A report path from the command line, relative to where s2build was started."""
    return os.path.join(args.cwd, path) if path else None

"""Errors users can act on, and the exit codes that are the CI contract.

Every error a user can cause is an `S2Error`: it carries a message, an optional location
(`file:line` or `file:line:col`) and an optional hint (the fix). The CLI prints
`LOCATION: MESSAGE (HINT)` without a traceback (unless `-v`) and exits with the class's code.
Anything else escaping is a bug in s2build and exits with `INTERNAL`.

Exit codes (documented once here and in README.md):

    0    OK           everything asked for succeeded (for `status`: nothing is stale)
    1    STALE        `status`: at least one target is out of date
    2    USAGE        bad command line
    3    CONFIG       s2build.yaml is invalid: syntax, unknown key, wrong type, missing file,
                      glob matching nothing, dependency cycle, unknown target
    4    DATA         a source row or file is malformed (reported at file:line)
    5    BUILD        training, export or user code failed
    6    VERIFY       the artifact failed verification (ONNX checker, onnxruntime vs torch parity)
    7    SPEC         a behaviour spec or metric gate failed
    8    LOCK_STALE   s2build.lock does not match the sources (`ci --frozen`)
    9    MISMATCH     `verify`: a rebuilt artifact differs from the recorded one
    10   LOCKED       another s2build process holds the build lock and `--no-wait` was given
    11   LINT         `lint`: an error diagnostic was found (`--fail-on LEVEL|never` moves the bar)
    70   INTERNAL     a bug in s2build (please report it with the `-v` traceback)
    130  INTERRUPTED  Ctrl-C (SIGINT); 143 for SIGTERM
"""

OK = 0
STALE = 1
USAGE = 2
CONFIG = 3
DATA = 4
BUILD = 5
VERIFY = 6
SPEC = 7
LOCK_STALE = 8
MISMATCH = 9
LOCKED = 10
LINT = 11
INTERNAL = 70
INTERRUPTED = 130
TERMINATED = 143


def exit_now(code):
    """End the process with `code` without interpreter teardown, after flushing stdout and
    stderr. Only for a process whose files are all closed and renamed into place: the CLI
    after a build that loaded torch (teardown serves nothing, 0.7 s at 1M rows) and a
    torchrun rank (gloo's threads at teardown sometimes abort it)."""
    import os
    import sys
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


class S2Error(Exception):
    """A failure the user can act on. `location` is 'file', 'file:line' or 'file:line:col'."""

    exit_code = INTERNAL

    def __init__(self, message, location=None, hint=None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self):
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class UsageError(S2Error):
    """The command line asks for something impossible (unknown target, bad flag value)."""

    exit_code = USAGE


class ConfigError(S2Error):
    """s2build.yaml is invalid, or a file it names is missing."""

    exit_code = CONFIG


class GraphError(ConfigError):
    """The target graph is invalid: unknown dependency or a cycle."""


class DataError(S2Error):
    """A data file or row is malformed; location points at it."""

    exit_code = DATA


class BuildError(S2Error):
    """The build ran and failed: training diverged, user code raised, export failed."""

    exit_code = BUILD


class VerificationError(S2Error):
    """The artifact was produced but failed verification; it is not recorded."""

    exit_code = VERIFY


class LockedError(S2Error):
    """Another s2build process holds the build lock."""

    exit_code = LOCKED


class SpecFailed(S2Error):
    """A behaviour spec or metric gate failed (or could not run)."""

    exit_code = SPEC


class LockStaleError(S2Error):
    """s2build.lock is missing, unreadable, or no longer matches the sources."""

    exit_code = LOCK_STALE


class MismatchError(S2Error):
    """`verify`: a rebuilt (or the installed) artifact differs from the recorded one."""

    exit_code = MISMATCH


class Interrupted(BaseException):
    """Raised from a signal handler (SIGTERM) or on Ctrl-C; `code` is the exit status."""

    def __init__(self, code=INTERRUPTED):
        super().__init__(code)
        self.code = code

"""The client half of the build server: runs `build`, `test`, `lint`, `blame` and `predict` in
the project's warm server process. Standard library only, never torch (see protocol.py).

`dispatch(argv, args)` is the one entry point (cli/main.py calls it before running a command
in-process). It returns the command's exit code when the server ran it, or None: run it
in-process. None when

- the server is off: `--no-server`, S2BUILD_NO_SERVER=1, or in CI (CI set to anything but
  0/false/no) and under pytest (PYTEST_CURRENT_TEST) unless S2BUILD_SERVER=1 asks for it;
- there is no s2build.yaml (the in-process command reports that), or `predict` reads stdin;
- `build` has nothing to do: the no-op check is the in-process planner itself (runner.plan,
  torch-free, milliseconds), so a no-op build never starts nor contacts a server;
- the server cannot be reached, started within START_TIMEOUT, or dies or stays silent for
  protocol.SILENCE seconds during the command: a warning on stderr, then in-process.

A server that answers `stale` (it runs other code or libraries than this client) is replaced:
it stops, and this client starts a fresh one. Ctrl-C sends `cancel`: the server interrupts the
command exactly as Ctrl-C interrupts it in-process (nothing is recorded for the unfinished
target) and streams its last words and exit code back; a second Ctrl-C leaves at once (130).
"""

import os
import socket
import sys
import time

from s2build.server import protocol

COMMANDS = ("build", "test", "lint", "blame", "predict")
START_TIMEOUT = 30.0      # seconds for a fresh server to answer (it imports torch first)
HELLO_TIMEOUT = 10.0      # seconds for a running server to answer a hello


class Unavailable(Exception):
    """No server could serve this command (the message says why)."""


def _truthy(value):
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def enabled(args):
    """Whether this command may use the server (see the module docstring)."""
    if getattr(args, "no_server", False) or _truthy(os.environ.get("S2BUILD_NO_SERVER")):
        return False
    if _truthy(os.environ.get("S2BUILD_SERVER")):
        return True
    return not (_truthy(os.environ.get("CI")) or os.environ.get("PYTEST_CURRENT_TEST"))


def project_root(args):
    """The folder of the s2build.yaml this command would load, or None."""
    from s2build.project import config
    if args.file:
        path = os.path.abspath(os.path.join(args.cwd, args.file))
        return os.path.dirname(path) if os.path.isfile(path) else None
    path = config.find(args.cwd)
    return os.path.dirname(path) if path else None


def _is_noop_build(args):
    """True when `build` would find everything up to date (the planner itself, in-process;
    any error: False, and the in-process build reports it)."""
    here = os.getcwd()
    try:
        from s2build.cli import common
        from s2build.engine import runner
        from s2build.engine.state import State
        from s2build.store.local import Cache
        project = common.load(args)
        mode = "dev" if args.dev and not args.release else "release"
        steps = runner.plan(project, args.targets, State.load(project.state_dir),
                            Cache(project.state_dir), mode)
        return all(s.action == "up-to-date" for s in steps)
    except Exception:
        return True             # in-process: it prints the error exactly as without a server
    finally:
        os.chdir(here)


def _warn(text):
    print(f"s2build: warning: {text}", file=sys.stderr, flush=True)


def dispatch(argv, args):
    """Run the command in the server; its exit code, or None to run it in-process."""
    if args.command not in COMMANDS or not enabled(args):
        return None
    if args.command == "predict" and getattr(args, "input", None) == "-":
        return None
    root = project_root(args)
    if root is None or (args.command == "build" and _is_noop_build(args)):
        return None
    hello = {"hello": protocol.VERSION, "digest": protocol.digest(), "argv": list(argv),
             "cwd": args.start_cwd, "env": _env(), "tty": [_isatty(sys.stdout), _isatty(sys.stderr)]}
    try:
        sock, reader = connect(root, hello, start=True)
    except Unavailable as e:
        _warn(f"build server unavailable ({e}); building in-process")
        return None
    return _stream(sock, reader)


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _env():
    env = dict(os.environ)
    if _isatty(sys.stdout) or _isatty(sys.stderr):     # progress bars: the client's width
        import shutil
        cols, lines = shutil.get_terminal_size()
        env.setdefault("COLUMNS", str(cols))
        env.setdefault("LINES", str(lines))
    return env


def _try(path, hello, timeout):
    """(socket, reader, reply) from the server at `path`, or None when nothing listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(protocol.encode(hello))
        reader = protocol.Reader(sock)
        reply = reader.next()
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except (OSError, socket.timeout) as e:
        sock.close()
        raise Unavailable(f"{path}: {e}") from None
    if reply is None:                     # closed without a word: going away
        sock.close()
        return None
    return sock, reader, reply


def connect(root, hello, start=True):
    """A connection to the project's server that accepted `hello`: (socket, reader). Starts
    (or replaces a stale) server when `start`; raises Unavailable."""
    path = protocol.socket_path(root)
    if protocol.private_dir(path) is None:
        raise Unavailable(f"{os.path.dirname(path)} is not a private folder")
    deadline, proc, exited_at = None, None, None
    while True:
        got = _try(path, hello, HELLO_TIMEOUT)
        if got is not None:
            sock, reader, reply = got
            if reply.get("hello") == "ok":
                sock.settimeout(protocol.SILENCE)
                return sock, reader
            sock.close()
            if reply.get("hello") != "stale":
                raise Unavailable(f"unexpected reply {reply!r}")
            # the old server unlinks its socket before answering `stale`
        if not start:
            raise Unavailable("no server is running")
        if proc is None:
            proc = _spawn(root)
            deadline = time.monotonic() + START_TIMEOUT
        elif proc.poll() is not None and exited_at is not None and \
                time.monotonic() > exited_at + 1.0:
            raise Unavailable("the new server exited at once "
                              f"(see {os.path.join(root, '.s2build', 'server.log')})")
        elif time.monotonic() > deadline:
            raise Unavailable(f"no answer from a new server within {START_TIMEOUT:.0f}s "
                              f"(see {os.path.join(root, '.s2build', 'server.log')})")
        if proc is not None and exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()    # it may have left for another server: try a while
        time.sleep(0.05)


def _spawn(root):
    """Start a detached server for `root` (a new session: the terminal's Ctrl-C never reaches
    it), running this client's s2build with this client's interpreter."""
    import subprocess
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    os.makedirs(os.path.join(root, ".s2build"), exist_ok=True)
    log_path = os.path.join(root, ".s2build", "server.log")
    try:
        keep = os.path.getsize(log_path) < 2**20            # else start it over
    except OSError:
        keep = True
    with open(log_path, "ab" if keep else "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "s2build.server.daemon", root], cwd=root,
                         env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True, close_fds=True)


def _stream(sock, reader):
    """Copy the server's output here until its exit code; None (fall back) when it dies."""
    cancels = 0
    try:
        while True:
            try:
                msg = reader.next()
            except KeyboardInterrupt:
                cancels += 1
                if cancels > 1:
                    return 130
                _send(sock, {"cancel": "int"})
                continue
            except socket.timeout:
                _warn(f"the build server said nothing for {protocol.SILENCE:.0f}s; "
                      "building in-process")
                return None
            except OSError as e:
                msg, why = None, str(e)
            else:
                why = "it closed the connection"
            if msg is None:
                _warn(f"the build server stopped during the command ({why}); building "
                      "in-process")
                return None
            if "o" in msg:
                sys.stdout.write(msg["o"])
                sys.stdout.flush()
            elif "e" in msg:
                sys.stderr.write(msg["e"])
                sys.stderr.flush()
            elif "exit" in msg:
                return int(msg["exit"] or 0)
    finally:
        sock.close()


def _send(sock, msg):
    try:
        sock.sendall(protocol.encode(msg))
    except OSError:
        pass


def cmd_shutdown(args):
    """`s2build shutdown`: stop the project's server, if one runs."""
    root = project_root(args)
    if root is None:
        print("s2build: no s2build.yaml here; no server to stop", file=sys.stderr)
        return 0
    hello = {"hello": protocol.VERSION, "digest": protocol.digest(), "shutdown": True}
    try:
        got = _try(protocol.socket_path(root), hello, HELLO_TIMEOUT)
    except Unavailable as e:
        print(f"s2build: server: {e}", file=sys.stderr)
        return 0
    if got is None:
        print("no build server running")
        return 0
    sock, reader, reply = got
    sock.settimeout(HELLO_TIMEOUT)
    try:
        while reader.next() is not None:        # wait until it has let go of the socket
            pass
    except OSError:
        pass
    sock.close()
    print(f"build server (pid {reply.get('pid')}) stopped")
    return 0

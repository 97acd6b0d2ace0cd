"""The build server's wire format, socket path and identity. Standard library only.

Why the standard library (`socket`, `json`, `fcntl`): the client runs in every `s2build`
process before anything else, and must cost a few milliseconds; gRPC, msgpack or an HTTP stack
would each cost more to import than the whole exchange, and a local AF_UNIX socket needs no
more than a framing of JSON objects.

Transport: an AF_UNIX stream socket, `.s2build/server.sock` (mode 0600: bound under umask 077,
so there is no moment when it is open to others). When that path is longer than AF_UNIX allows
(108 bytes with the NUL), `/tmp/s2build-UID/DIGEST.sock` instead (a 0700 folder; DIGEST: the
first 16 hex digits of SHA-256 of the project root).

Framing: one JSON object per line (UTF-8, `\\n`-terminated; json.dumps escapes newlines).

    client -> server  {"hello": 1, "digest": D, "argv": [...], "cwd": DIR, "env": {...},
                       "tty": [stdout_isatty, stderr_isatty]}     run a command
                      {"hello": 1, "digest": D, "shutdown": true}  stop (`s2build shutdown`)
                      {"cancel": "int" | "term"}                   Ctrl-C / SIGTERM in the client
    server -> client  {"hello": "ok", "pid": N} | {"hello": "stale", "pid": N}
                      {"o": TEXT} | {"e": TEXT}     stdout / stderr, in the order written
                      {"hb": 1}                     heartbeat, every HEARTBEAT seconds
                      {"exit": CODE}                the command's exit code; the last message

`.s2build/server.json` (atomic) says which server serves the project: {"pid", "digest",
"socket", "started"}; informational (for people and tests), never trusted for liveness.

`digest()` identifies the code a server runs: s2build's own sources (toolchain.code_digest),
the versions of every library in toolchain.TOOL_PACKAGES plus onnxruntime, the interpreter and
its version. A client whose digest differs from the server's replaces the server (a server
never builds with older code or libraries than the client would).
"""

import hashlib
import json
import os
import sys

VERSION = 1
HEARTBEAT = 1.0           # seconds between a server's heartbeats
SILENCE = 30.0            # seconds without any message before a client gives up on a server
UNIX_PATH_MAX = 107       # bytes of an AF_UNIX path, the terminating NUL excluded


def socket_path(root):
    """The socket of the project at `root` (see the module docstring)."""
    path = os.path.join(root, ".s2build", "server.sock")
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return path
    folder = os.path.join("/tmp", f"s2build-{os.getuid()}")
    return os.path.join(folder, hashlib.sha256(os.fsencode(root)).hexdigest()[:16] + ".sock")


def private_dir(path):
    """Make the folder of socket `path` (0700 when it is the /tmp fallback); None when it is
    someone else's or not private."""
    folder = os.path.dirname(path)
    if os.path.basename(folder) == ".s2build":
        os.makedirs(folder, exist_ok=True)
        return folder
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(folder)
    import stat
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return folder


def info_path(root):
    return os.path.join(root, ".s2build", "server.json")


_DIGEST = None


def digest():
    """The identity of the code this process runs (see the module docstring). ~2 ms, cached."""
    global _DIGEST
    if _DIGEST is None:
        from s2build.engine import toolchain
        versions = toolchain._installed_versions(toolchain.TOOL_PACKAGES + ("onnxruntime",))
        text = json.dumps({"code": toolchain.code_digest(), "versions": versions,
                           "python": sys.version, "executable": sys.executable,
                           "protocol": VERSION}, sort_keys=True)
        _DIGEST = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _DIGEST


def encode(msg):
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode("utf-8")


class Reader:
    """Reads the JSON-lines messages of one socket. `next()` returns a dict, or None at EOF;
    raises socket.timeout (after the socket's timeout) and OSError as the socket does."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def next(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None

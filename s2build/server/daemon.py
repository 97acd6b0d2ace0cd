"""The build server: one warm process per project that runs CLI commands for clients.

    python -m s2build.server.daemon PROJECT_ROOT       (started by client._spawn, detached)

Threads:

    main       binds the socket (under a start lock, `.s2build/server.lock`, so two clients
               starting servers at once get one), imports torch, onnx and onnxruntime and every
               s2build module, then runs jobs one at a time: each is `cli.main.main` itself
               with `--no-server` (the same command functions, error handling and exit codes as
               in-process), with the client's cwd and environment and sys.stdout / sys.stderr
               sending {"o"} / {"e"} messages. When idle it warms up once (watch._warm_up:
               the first optimizer step, export and onnxruntime session, the code path that
               watch uses); like watch, it keeps parsed shards in memory (shards.MEMO).
    acceptor   accepts connections, answers hellos (`stale` when the client's protocol.digest
               differs: this server then stops taking work and lets go of the socket), queues
               jobs.
    per client reads `cancel` or EOF (the client was killed): a running job is interrupted
               with SIGINT (SIGTERM for a client's SIGTERM) sent to the main thread, which is
               what Ctrl-C does to an in-process build: training stops, nothing is recorded for
               the unfinished target (every write is tmp + os.replace); a queued job is dropped.
    heartbeat  {"hb": 1} to every client each protocol.HEARTBEAT seconds, so a client tells a
               hung or dead server from a long build.

Jobs run one at a time in this process; builds still take `.s2build/lock` (runner.build), so
a server build and an in-process build of the same project never overlap, and a second client
waiting behind the first finds the target up to date.

The server exits after S2BUILD_SERVER_IDLE seconds without a job (default IDLE, 300), on
`s2build shutdown`, on a stale hello, or when its project's `.s2build/` disappears.
Its stdout and stderr (C-level library output, crashes) go to `.s2build/server.log`.
"""

import json
import os
import queue
import signal
import socket
import sys
import threading
import time

from s2build.server import protocol

IDLE = 300.0


class _Client:
    def __init__(self, sock, hello):
        self.sock, self.hello = sock, hello
        self.lock = threading.Lock()
        self.alive = True
        self.cancelled = None         # None | "int" | "term"

    def send(self, msg):
        if not self.alive:
            return
        data = protocol.encode(msg)
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.alive = False


class _Pipe:
    """sys.stdout / sys.stderr of a job: every write becomes one message to its client."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, client, key, tty):
        self.client, self.key, self.tty = client, key, tty

    def write(self, text):
        if text:
            self.client.send({self.key: str(text)})
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return self.tty

    def fileno(self):
        import io
        raise io.UnsupportedOperation("fileno")

    def writable(self):
        return True


class Server:
    def __init__(self, root, idle):
        self.root, self.idle = root, idle
        self.path = protocol.socket_path(root)
        self.digest = protocol.digest()
        self.jobs = queue.Queue()
        self.clients = set()
        self.guard = threading.Lock()       # current, clients
        self.current = None                 # the _Client whose job runs now
        self.stopping = threading.Event()
        self.listener = None
        self.inode = None
        self.warm = False

    # --- the socket ---------------------------------------------------------------------
    def bind(self):
        """Listen on the project's socket; False when another live server already does."""
        import fcntl
        if protocol.private_dir(self.path) is None:
            return False
        os.makedirs(os.path.join(self.root, ".s2build"), exist_ok=True)
        with open(os.path.join(self.root, ".s2build", "server.lock"), "a") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(2.0)
            try:
                probe.connect(self.path)
                return False                      # a live server: let the client talk to it
            except (FileNotFoundError, ConnectionRefusedError, socket.timeout):
                pass
            finally:
                probe.close()
            try:
                os.unlink(self.path)              # a dead server's socket
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)                 # born 0600: no window open to others
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            sock.listen(16)
            self.listener, self.inode = sock, os.stat(self.path).st_ino
            from s2build import atomic
            atomic.write_text(protocol.info_path(self.root), json.dumps(
                {"pid": os.getpid(), "digest": self.digest, "socket": self.path,
                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1))
        return True

    def release(self):
        """Let go of the socket (only if it is still ours) so a new server can bind."""
        if self.listener is None:
            return
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass
        try:
            self.listener.close()
        except OSError:
            pass
        self.listener = None

    # --- threads ------------------------------------------------------------------------
    def _accept_loop(self):
        listener = self.listener
        while not self.stopping.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._client_loop, args=(sock,), daemon=True).start()

    def _client_loop(self, sock):
        sock.settimeout(protocol.SILENCE)
        reader = protocol.Reader(sock)
        try:
            hello = reader.next()
        except OSError:
            hello = None
        if not hello or "hello" not in hello:
            sock.close()
            return
        client = _Client(sock, hello)
        if self.stopping.is_set():
            sock.close()
            return
        if hello.get("digest") != self.digest:
            self.stop()                    # older (or newer) code: a fresh server replaces us
            client.send({"hello": "stale", "pid": os.getpid()})
            sock.close()
            return
        client.send({"hello": "ok", "pid": os.getpid()})
        if hello.get("shutdown"):
            self.stop()
            self.jobs.put(None)
            sock.close()
            return
        with self.guard:
            self.clients.add(client)
            busy = self.current
        if busy is not None:                 # as in-process, where it waits for the lock
            client.send({"e": "s2build: warning: waiting for the build server, busy with "
                              f"`s2build {' '.join(busy.hello.get('argv') or [])}`\n"})
        self.jobs.put(client)
        sock.settimeout(None)
        while client.alive:
            try:
                msg = reader.next()
            except OSError:
                msg = None
            if msg is None:
                self._cancel(client, "int")          # the client is gone (killed, closed)
                client.alive = False
                break
            if "cancel" in msg:
                self._cancel(client, "term" if msg["cancel"] == "term" else "int")
        with self.guard:
            self.clients.discard(client)

    def _cancel(self, client, how):
        with self.guard:
            if client.cancelled is not None:
                return                       # once: a second SIGINT (the client's EOF after
            client.cancelled = how           # its cancel) would cut the job's clean-up short
            if self.current is client:
                signal.pthread_kill(threading.main_thread().ident,
                                    signal.SIGTERM if how == "term" else signal.SIGINT)

    def _heartbeat_loop(self):
        while not self.stopping.wait(protocol.HEARTBEAT):
            with self.guard:
                clients = list(self.clients)
            for c in clients:
                c.send({"hb": 1})
            if not os.path.isdir(os.path.join(self.root, ".s2build")):
                self.stop()                  # the project went away (a deleted tmp folder)
                self.jobs.put(None)

    def stop(self):
        self.stopping.set()
        self.release()

    # --- the main thread ----------------------------------------------------------------
    def run(self):
        threading.Thread(target=self._accept_loop, daemon=True, name="accept").start()
        threading.Thread(target=self._heartbeat_loop, daemon=True, name="heartbeat").start()
        signal.signal(signal.SIGTERM, lambda *a: self._exit_soon())
        self._import_all()
        last = time.monotonic()
        while True:
            try:
                try:
                    client = self.jobs.get(timeout=0.2)
                except queue.Empty:
                    if self.stopping.is_set() and self.jobs.empty():
                        return
                    if not self.warm:
                        self._warm_up()
                    elif time.monotonic() - last > self.idle:
                        self.stop()
                    continue
                if client is None:
                    continue
                self._run_job(client)
                last = time.monotonic()
            except KeyboardInterrupt:       # a cancel that arrived just as its job ended
                continue

    def _exit_soon(self):
        self.stop()
        self.jobs.put(None)

    def _import_all(self):
        """Import what a build uses, so no job pays for it (all of s2build: a module imported
        later could be newer code than `digest` says)."""
        import pkgutil
        import importlib

        import s2build
        for m in pkgutil.walk_packages(s2build.__path__, "s2build."):
            if m.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(m.name)
            except Exception as e:
                print(f"server: import {m.name}: {e}", file=sys.stderr, flush=True)
        for name in ("torch", "onnx", "onnxruntime"):
            importlib.import_module(name)
        from s2build.data import shards
        from s2build.engine import watch
        shards.MEMO.limit = watch.WATCH_MEMO_BYTES   # as watch: unchanged shards stay in memory

    def _warm_up(self):
        self.warm = True
        from s2build.engine import watch
        exporters = {"legacy"}
        try:
            from s2build.project import config
            project = config.load(os.path.join(self.root, config.CONFIG_NAME))
            exporters |= {t.config["export"]["exporter"] for t in project.targets.values()}
        except Exception:
            pass
        clock = time.perf_counter()
        watch._warm_up(exporters)
        print(f"server: warmed up ({', '.join(sorted(exporters))}) in "
              f"{time.perf_counter() - clock:.1f}s", file=sys.stderr, flush=True)

    def _run_job(self, client):
        """Run one client's command: cli.main.main, as in-process."""
        from s2build.cli import main as cli
        hello = client.hello
        if not client.alive:
            return
        if client.cancelled:                 # Ctrl-C while queued: as while waiting for a lock
            client.send({"e": "s2build: interrupted; nothing was recorded for the unfinished "
                              "target\n"})
            client.send({"exit": 130 if client.cancelled == "int" else 143})
            return
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        saved_out, saved_err = sys.stdout, sys.stderr
        rc = 70
        try:
            os.environ.clear()
            os.environ.update(hello.get("env") or {})
            os.chdir(hello["cwd"])
            tty = list(hello.get("tty") or [False, False]) + [False, False]
            sys.stdout = _Pipe(client, "o", bool(tty[0]))
            sys.stderr = _Pipe(client, "e", bool(tty[1]))
            with self.guard:
                self.current = client
            print(f"server: {time.strftime('%H:%M:%S')} job: s2build "
                  f"{' '.join(hello['argv'])} (in {hello['cwd']})", file=saved_err, flush=True)
            try:
                rc = cli.main(["--no-server", *hello["argv"]])
            except KeyboardInterrupt:
                rc = 130
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 2
        except KeyboardInterrupt:
            rc = 130
        except Exception as e:               # cwd gone, bad hello: the client falls back
            print(f"server: job failed: {type(e).__name__}: {e}", file=saved_err, flush=True)
            client.alive = False
            client.sock.close()
        finally:
            while True:                       # a late cancel must not leave this half done
                try:
                    with self.guard:
                        self.current = None
                    sys.stdout, sys.stderr = saved_out, saved_err
                    os.environ.clear()
                    os.environ.update(saved_env)
                    os.chdir(saved_cwd)
                    signal.signal(signal.SIGTERM, lambda *a: self._exit_soon())
                    break
                except KeyboardInterrupt:
                    continue
        client.send({"exit": rc})
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def idle_seconds():
    try:
        return float(os.environ.get("S2BUILD_SERVER_IDLE") or IDLE)
    except ValueError:
        return IDLE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    root = os.path.abspath(argv[0])
    os.chdir(root)
    server = Server(root, idle_seconds())
    if not server.bind():
        return 0
    print(f"server: pid {os.getpid()} serving {root} on {server.path} (digest {server.digest}, "
          f"idle {server.idle:g}s)", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        server.release()
        print(f"server: pid {os.getpid()} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

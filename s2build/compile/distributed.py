"""Distributed training of one target through torchrun: `train: {nproc: N}` or `--nproc N`.

`train(target, ds, state_dir, ...)` is train.train for a world of `world_size(target)` > 1
processes: the build process writes the dataset arrays it built into a job folder under
`.s2build/tmp/` (np.save, memory-mappable), starts torchrun on compile/ddp.py (its docstring
holds the job folder's format), waits, and loads what local rank 0 wrote into a train.Trained,
which the build process then measures, exports, verifies and records exactly as one process's.

    single node (torchrun.nnodes 1)   python -m torch.distributed.run --standalone
                                        --nproc-per-node N --nnodes 1 ...
    several nodes                     --nnodes M plus node_rank, master_addr, master_port,
                                        rdzv_backend, rdzv_endpoint, rdzv_id when set in the
                                        yaml; torchrun reads the unset ones from PET_NODE_RANK,
                                        PET_MASTER_ADDR, ... (its own environment variables)

Every node runs `s2build build` with the same sources; each node's local rank 0 returns the
(identical) trained network to its own build process. The world size (nproc x nnodes) is in
the build key (project/config.key_config); addresses, ports and rendezvous are not.

Failures: a rank's error (user code at its file:line, a diverged loss, s2build's own error) is
raised here as the same S2Error with `(rank R of W)`; a rank that died without a word (killed,
os._exit) is a BuildError naming its exit code; the ranks' output is kept in
`.s2build/logs/TARGET.torchrun.log`. Ctrl-C, SIGTERM or watch's cancel stop torchrun and its
ranks (SIGTERM, SIGKILL after STOP_GRACE seconds). The job folder is removed in every case.
"""

import glob
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time

from s2build import errors
from s2build.errors import BuildError

STOP_GRACE = 10.0        # seconds between SIGTERM and SIGKILL of torchrun
POLL = 0.1               # seconds between looks at torchrun and the progress file
_PASS = (("node_rank", "--node-rank"), ("master_addr", "--master-addr"),
         ("master_port", "--master-port"), ("rdzv_backend", "--rdzv-backend"),
         ("rdzv_endpoint", "--rdzv-endpoint"), ("rdzv_id", "--rdzv-id"))


def world_size(target):
    """Processes that train `target`: train.nproc x train.torchrun.nnodes."""
    t = target.config["train"]
    return t["nproc"] * t["torchrun"]["nnodes"]


def command(target, job):
    """The argv that starts torchrun for `target` on job folder `job` (a pure function)."""
    t = target.config["train"]
    run = t["torchrun"]
    argv = [sys.executable, "-m", "s2build.compile.ddp", "--launch",
            "--nproc-per-node", str(t["nproc"]), "--nnodes", str(run["nnodes"]),
            "--max-restarts", "0", "--monitor-interval", "0.1", "--shutdown-timeout", "5"]
    if run["nnodes"] == 1:
        argv.append("--standalone")
    else:
        for key, flag in _PASS:
            if run.get(key) is not None:
                argv += [flag, str(run[key])]
    return argv + ["-m", "s2build.compile.ddp", job]


def _env():
    """The build process's environment, with s2build importable, one thread per rank and the
    pid the agent checks its parent against."""
    from s2build.compile import ddp
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env[ddp.PARENT_ENV] = str(os.getpid())
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    return env


def _check(target, ds, device):
    t = target.config["train"]
    n_train = int((~ds.holdout).sum())
    world = world_size(target)
    if n_train < world:
        raise BuildError(f"train.nproc {t['nproc']}: {n_train} training rows for {world} "
                         "processes", target.loc("train", "nproc"), "lower train.nproc")
    if device == "cuda":
        import torch
        have = torch.cuda.device_count()
        if have < t["nproc"]:
            raise BuildError(f"train.nproc {t['nproc']} on cuda, but this machine has {have} "
                             "GPU(s)", target.loc("train", "nproc"),
                             f"set train.nproc to at most {have}")


def _write_job(target, ds, job, backend):
    import numpy as np
    np.save(os.path.join(job, "x.npy"), ds.x)
    np.save(os.path.join(job, "y.npy"), ds.y)
    np.save(os.path.join(job, "holdout.npy"), ds.holdout)
    if getattr(ds, "soft", None) is not None:       # upstream soft labels (compile/distill.py)
        np.save(os.path.join(job, "soft.npy"), ds.soft)
    with open(os.path.join(job, "target.pkl"), "wb") as f:
        pickle.dump(target, f)
    with open(os.path.join(job, "job.json"), "w") as f:
        json.dump({"backend": backend, "task": ds.task, "classes": list(ds.classes)}, f)


def train(target, ds, state_dir, cancel=None, progress=None):
    """Train `target` on `ds` in world_size(target) processes under torchrun; returns a
    train.Trained as train.train does (module on the CPU, eval mode; history, holdout metrics,
    dynamics, optimizer state). Raises the failing rank's S2Error, a BuildError, or
    train.Cancelled when `cancel` (a threading.Event) is set; leaves no job folder behind."""
    from s2build.compile import train as trainer
    from s2build.engine import toolchain
    device = toolchain.resolve_device(target.config["train"]["device"])
    _check(target, ds, device)
    started = time.perf_counter()
    tmp = os.path.join(state_dir, "tmp")            # cleaned by the next build when killed
    os.makedirs(tmp, exist_ok=True)
    job = tempfile.mkdtemp(prefix=".s2tmp-nproc-", dir=tmp)
    log_path = os.path.join(state_dir, "logs", f"{target.name}.torchrun.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    proc = None
    try:
        _write_job(target, ds, job, "nccl" if device == "cuda" else "gloo")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command(target, job), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        rc = _wait(proc, job, cancel, progress, trainer.Cancelled)
        if rc != 0 or not os.path.isdir(os.path.join(job, "result")):
            raise failure(job, rc, log_path, world_size(target), target)
        return _load(target, ds, os.path.join(job, "result"), time.perf_counter() - started)
    except BaseException:
        if proc is not None:                        # Ctrl-C, SIGTERM, cancel: stop the ranks
            stop(proc)
        raise
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _wait(proc, job, cancel, progress, cancelled):
    """torchrun's exit code, reporting rank 0's progress; raises `cancelled` on `cancel`."""
    path, seen = os.path.join(job, "progress.json"), None
    while True:
        try:
            rc = proc.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            rc = None
        if cancel is not None and cancel.is_set():
            raise cancelled()
        if progress is not None:
            now = _read(path)
            if now and now != seen:
                progress(now["done"], now["total"], now["loss"])
                seen = now
        if rc is not None:
            return rc


def stop(proc):
    """Stop torchrun: SIGTERM (it stops its ranks), SIGKILL after STOP_GRACE seconds (the
    ranks then die with it: their parent-death signal)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _ends(log):
    """From torchrun's failure report: ({rank: how it ended}, the root cause's rank or None);
    how: 'exit code 3', 'killed by SIGKILL'."""
    import signal
    ends = {}
    for m in re.finditer(r"^\s*rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)", log, re.M):
        code = int(m.group(2))
        try:
            how = f"exit code {code}" if code >= 0 else f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        ends.setdefault(int(m.group(1)), how)
    root = re.search(r"Root Cause.*?^\s*rank\s*:\s*(\d+)", log, re.S | re.M)
    return ends, int(root.group(1)) if root else None


def failure(job, rc, log_path, world, target):
    """The S2Error for a failed run: the earliest rank's own error, else a rank that died
    without a word, else torchrun's exit code and the last lines of its log."""
    errs = [e for e in map(_read, glob.glob(os.path.join(job, "error-*.json"))) if e]
    own = sorted((e for e in errs if e["kind"] == "error"), key=lambda e: e["time_ns"])
    shown = os.path.relpath(log_path) if not os.path.relpath(log_path).startswith("..") \
        else log_path
    if own:
        e = own[0]
        cls = getattr(errors, e["cls"] or "", None)
        if not (isinstance(cls, type) and issubclass(cls, errors.S2Error)):
            cls = BuildError
        if e["cls"] is None:                        # not an S2Error: s2build's or torch's
            return BuildError(f"rank {e['rank']} of {world} raised {e['message']}",
                              e["location"], f"the ranks' output is in {shown}")
        hint = (e["hint"] or "").replace("run with -v for the full traceback",
                                         f"the full traceback is in {shown}")
        return cls(f"{e['message']} (rank {e['rank']} of {world})", e["location"], hint or None)
    def ranks(prefix):
        return {int(p.rsplit("-", 1)[1]) for p in glob.glob(os.path.join(job, prefix + "-*"))}
    with open(log_path, errors="replace") as f:
        log = f.read()
    silent = sorted(ranks("started") - ranks("done") - {e["rank"] for e in errs})
    ends, root = _ends(log)
    if silent:
        rank = root if root in silent else silent[0]
        how = ends.get(rank)
        return BuildError(f"rank {rank} of {world} died without an error"
                          + (f" ({how})" if how else ""), target.loc("train", "nproc"),
                          f"the ranks' output is in {shown}")
    tail = "\n".join(log.strip().splitlines()[-8:])
    return BuildError(f"torchrun failed (exit code {rc}) before the ranks trained:\n{tail}",
                      target.loc("train", "nproc"), f"the whole output is in {shown}")


class _Dynamics:
    """train.Dynamics as loaded from the rank's dynamics.npz (only `arrays()` is read)."""

    def __init__(self, arrays):
        self._arrays = arrays

    def arrays(self):
        return self._arrays


def _load(target, ds, result, seconds):
    """train.Trained from local rank 0's `result/` folder."""
    import numpy as np
    import torch
    from s2build.compile import train as trainer
    with open(os.path.join(result, "meta.json")) as f:
        meta = json.load(f)
    net = trainer.Run(target, ds, "cpu", None).net          # the architecture; weights below
    net.load_state_dict(torch.load(os.path.join(result, "weights.pt"), weights_only=True))
    opt = torch.load(os.path.join(result, "optimizer.pt"), weights_only=True)
    dyn = None
    if os.path.exists(os.path.join(result, "dynamics.npz")):
        with np.load(os.path.join(result, "dynamics.npz")) as z:
            dyn = _Dynamics({k: z[k] for k in z.files})
    return trainer.Trained(module=net.eval(), history=meta["history"], metrics=meta["metrics"],
                           seconds=seconds, device=meta["device"], dynamics=dyn,
                           optimizer_state=opt, holdout_curve=meta.get("holdout_curve"))

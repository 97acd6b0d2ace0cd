"""One rank of a distributed build (`train: {nproc: N}`), as torchrun runs it.

compile/distributed.py (the build process) writes a job folder and starts

    python -m s2build.compile.ddp --launch TORCHRUN_ARGS... -m s2build.compile.ddp JOB

`--launch` is torchrun (`torch.distributed.run.main`) with a parent-death signal, so the agent
stops when the build process dies (and each rank when the agent dies). Every rank runs
`train.fit`, the one training loop, with the Shard schedule under DistributedDataParallel
(gloo on the CPU, nccl on CUDA, one device per local rank): DDP averages the gradients.

The job folder, written by distributed.py:

    job.json                  {"backend": "gloo" | "nccl", "task", "classes"}
    target.pkl                the Target (resolved config, yaml locations, root for user code)
    x.npy y.npy holdout.npy   the dataset's arrays, memory-mapped here (a rank gathers its rows)
    soft.npy                  the upstream's logits, when the target distils (optional)

What the ranks write into it (R: the global rank; files tmp + os.replace):

    started-R, done-R         rank R began / finished without an error
    progress.json             local rank 0: {"done", "total", "loss"} after each epoch
    result/                   local rank 0 of each node: weights.pt (the state_dict),
                              optimizer.pt, dynamics.npz (train.Dynamics.arrays()), meta.json
                              {"history", "metrics", "device", "holdout_curve"}; one
                              os.replace of a folder
    error-R.json              rank R failed: {"rank", "kind", "cls", "message", "location",
                              "hint", "trace", "time_ns"}; kind is "error" (its own failure),
                              "peer" (a collective lost a rank) or "terminated" (a signal)
"""

import hashlib
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
import torch

from s2build.compile import train

AGENT_ENV = "S2BUILD_DDP_AGENT"       # the torchrun agent's pid, for the ranks' parent check
PARENT_ENV = "S2BUILD_DDP_PARENT"     # the build process's pid, for the agent's


class Shard:
    """A train.fit schedule: this rank's part of the training rows, `train.epochs` passes.

    The partition is fixed for the build: one permutation of the n training rows, drawn from a
    generator seeded with `train.seed`, padded by wrapping to a multiple of the world size W and
    dealt out round robin (rank r holds positions r, r + W, ...: P = ceil(n / W) rows, at most
    W - 1 rows held by two ranks). Each epoch a rank visits its part in an order drawn from its
    own generator (seeded by train.seed, W and r) in batches of ceil(batch_size / W) rows, so
    every rank takes the same steps and a step's W batches hold about `train.batch_size` rows.
    """

    def __init__(self, t, n, rank, world):
        self.epochs, self.threads = t["epochs"], 1
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(t["seed"]))
        per = -(-n // world)
        padded = torch.cat([perm, perm[: per * world - n]])        # [P * W]
        self.part = padded[rank::world]                             # [P]
        self.bs = -(-t["batch_size"] // world)
        self.gen = torch.Generator().manual_seed(rank_seed(t["seed"], world, rank))

    def start(self, run):
        from torch.nn.parallel import DistributedDataParallel
        ids = [torch.cuda.current_device()] if run.device == "cuda" else None
        # buffers (the input standardisation) are synced once, at init, not in every forward
        # (a forward would otherwise be a collective: the holdout passes are rank-local)
        run.net = DistributedDataParallel(run.net, device_ids=ids, forward_sync_buffers=False)

    def batches(self, run, r):
        if r >= self.epochs:
            return None
        order = self.part[torch.randperm(len(self.part), generator=self.gen)]
        return [order[i:i + self.bs] for i in range(0, len(order), self.bs)]

    def done(self, r):
        return r + 1, self.epochs


def rank_seed(seed, world, rank):
    """The seed of rank `rank`'s epoch orders: a digest of (train.seed, world size, rank)."""
    digest = hashlib.sha256(f"{seed}:{world}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _gather(x, device):
    """Every rank's `x` (equal shapes), concatenated in rank order, on `device`."""
    import torch.distributed as dist
    x = x.contiguous().to(device)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts)


class Gathered(train.Recorder):
    """train.Recorder over every rank's rows. At the end of each epoch that records, the ranks'
    outputs (at checkpoints also the last layer's inputs) and row positions are gathered, a row
    two ranks visited is kept once (its first rank's), and train.Recorder.end runs on the whole
    epoch: every rank holds the Dynamics of a one-process build, each row's taken at its step."""

    def end(self, epoch, order):
        if self.want:
            device = self.run.device
            every = _gather(order, device).cpu()                     # [W * P]
            _, first = np.unique(every.numpy(), return_index=True)
            keep = torch.from_numpy(np.sort(first))
            self.outs = _gather(self._outs(), device)[keep.to(device)]
            self.filled = len(keep)
            if self.hook is not None:                                # a checkpoint epoch
                emb = torch.cat([a.reshape(len(a), -1) for a in self.seen])
                self.seen = [_gather(emb, device)[keep.to(device)]]
            order = every[keep]
        super().end(epoch, order)


Shard.recorder = Gathered


class Arrays:
    """What train.fit reads of a dataset: x, y, holdout (memory-mapped), task, classes."""

    def __init__(self, job, spec):
        load = lambda name: np.load(os.path.join(job, name), mmap_mode="c")   # noqa: E731
        self.x, self.y, self.holdout = load("x.npy"), load("y.npy"), np.load(
            os.path.join(job, "holdout.npy"))
        self.task, self.classes = spec["task"], spec["classes"]
        soft = os.path.join(job, "soft.npy")          # upstream soft labels, when distilling
        self.soft = np.load(soft) if os.path.isfile(soft) else None


def _write_json(path, obj):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _progress(job):
    path = os.path.join(job, "progress.json")
    return lambda done, total, loss: _write_json(path, {"done": done, "total": total,
                                                         "loss": loss})


def _write_result(job, trained, history):
    """`result/` in one os.replace: the state_dict, optimizer state, dynamics and meta.json."""
    tmp = tempfile.mkdtemp(prefix=".s2tmp-result-", dir=job)
    try:
        torch.save(trained.module.module.state_dict(), os.path.join(tmp, "weights.pt"))
        torch.save(trained.optimizer_state, os.path.join(tmp, "optimizer.pt"))
        if trained.dynamics is not None:
            np.savez(os.path.join(tmp, "dynamics.npz"), **trained.dynamics.arrays())
        meta = {"history": history, "device": trained.device,
                "metrics": {k: float(v) for k, v in trained.metrics.items()},
                "holdout_curve": trained.holdout_curve}
        _write_json(os.path.join(tmp, "meta.json"), meta)
        os.replace(tmp, os.path.join(job, "result"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_rank(job, rank, local, world):
    """Train this rank's part; local rank 0 writes `result/`."""
    import torch.distributed as dist
    with open(os.path.join(job, "job.json")) as f:
        spec = json.load(f)
    with open(os.path.join(job, "target.pkl"), "rb") as f:
        target = pickle.load(f)
    ds = Arrays(job, spec)
    if spec["backend"] == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(spec["backend"])
    try:
        n_train = int((~ds.holdout).sum())
        schedule = Shard(target.config["train"], n_train, rank, world)
        trained = train.fit(target, ds, schedule, record=True,
                            progress=_progress(job) if local == 0 else None)
        # each rank's mean loss per epoch over equal row counts: the mean of the means
        hist = torch.tensor(trained.history, dtype=torch.float64,
                            device="cuda" if spec["backend"] == "nccl" else "cpu")
        dist.all_reduce(hist)
        if local == 0:
            _write_result(job, trained, (hist / world).tolist())
    finally:
        dist.destroy_process_group()


def _kind(e):
    """'terminated' (a signal), 'peer' (a collective lost another rank) or 'error'."""
    from s2build import errors
    if isinstance(e, (KeyboardInterrupt, errors.Interrupted)):
        return "terminated"
    text = str(e).lower()
    import torch.distributed as dist
    lost = ("connection closed", "connection reset", "broken pipe", "peer", "socket closed")
    if isinstance(e, (RuntimeError, getattr(dist, "DistError", RuntimeError))) and \
            any(w in text for w in lost):
        return "peer"
    return "error"


def _write_error(job, rank, e):
    """error-R.json for exception `e` (user code's at its file:line, as in one process)."""
    import traceback
    from s2build.errors import S2Error
    err = e if isinstance(e, S2Error) else None
    if err is None and not isinstance(e, (KeyboardInterrupt, SystemExit)):
        try:
            with open(os.path.join(job, "target.pkl"), "rb") as f:
                from s2build.compile import usercode
                err = usercode.attribute(pickle.load(f), e)
        except Exception:
            err = None
    where = traceback.extract_tb(e.__traceback__)
    last = where[-1] if where else None
    out = {"rank": rank, "kind": _kind(e), "time_ns": time.time_ns(),
           "trace": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-4000:]}
    if err is not None:
        out.update(cls=type(err).__name__, exit_code=err.exit_code, message=err.message,
                   location=err.location, hint=err.hint)
    else:
        out.update(cls=None, message=f"{type(e).__name__}: {e}".strip(),
                   location=f"{last.filename}:{last.lineno}" if last else None, hint=None)
    if out["kind"] == "error":               # the log keeps the whole traceback
        sys.stderr.write(f"rank {rank}: {out['trace']}")
        sys.stderr.flush()
    _write_json(os.path.join(job, f"error-{rank}.json"), out)


def _parent_death(sig, expected):
    """Ask Linux to send `sig` to this process when its parent dies; exit at once when the
    parent (pid `expected`, when known) is already gone."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                              # not Linux: the build process stops torchrun itself
    if expected and os.getppid() != int(expected):
        os._exit(1)


def _on_signal(signum, frame):
    from s2build import errors
    raise errors.Interrupted(128 + signum)


def main(argv):
    if argv[:1] == ["--launch"]:                     # the torchrun agent
        _parent_death(signal.SIGTERM, os.environ.get(PARENT_ENV))
        os.environ[AGENT_ENV] = str(os.getpid())
        from torch.distributed.run import main as torchrun
        torchrun(argv[1:])
        return 0
    job = argv[0]
    _parent_death(signal.SIGKILL, os.environ.get(AGENT_ENV))
    import faulthandler
    faulthandler.enable()                    # a crash in C++ shows its Python stack in the log
    signal.signal(signal.SIGTERM, _on_signal)
    rank, local, world = (int(os.environ[k]) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    open(os.path.join(job, f"started-{rank}"), "w").close()
    try:
        run_rank(job, rank, local, world)
    except BaseException as e:
        _write_error(job, rank, e)
        return 1
    open(os.path.join(job, f"done-{rank}"), "w").close()
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except BaseException:                   # torchrun's ChildFailedError: its report is above
        import traceback
        traceback.print_exc()
        code = 1
    # no interpreter teardown: gloo's threads at teardown sometimes abort a rank ('terminate
    # called without an active exception', about 1 in 8 builds here), which torchrun reports
    # as a failed rank; everything the rank writes is closed and renamed into place by now
    from s2build import errors
    errors.exit_now(code)

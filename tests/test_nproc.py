"""train: {nproc: N}: real torchrun, 2 CPU ranks with gloo and DistributedDataParallel.

The target is a generated table (4,000 rows, 3 classes decided by linear scores, rows near a
boundary left out), learnt to 99.5-99.9% holdout accuracy by one process over seeds 0-4, so a
2-process build, like another seed, must come within 1 point of it. The ONNX files are compared by
SHA-256; config errors are checked in-process (no torch).
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run, sha256

YAML = """\
version: 1
targets:
  table:
    sources: [data/*.csv]
    loader: {{format: csv, label: label, task: classification, classes: 3}}
    model: {model}
    train: {{epochs: {epochs}, batch_size: 64, lr: 0.003, seed: 0, nproc: {nproc}{more}}}
    holdout: {{fraction: 0.25, seed: 0}}
    export: {{exporter: legacy}}
"""
CRASHING_NET = """\
import os
import torch


class Net(torch.nn.Module):
    def __init__(self, in_features, out_features, mode="raise", **_):
        super().__init__()
        self.lin = torch.nn.Linear(in_features, out_features)
        self.mode, self.steps = mode, 0

    def forward(self, x):
        self.steps += self.training
        if self.steps > 3 and os.environ.get("RANK") == "1":
            if self.mode == "exit":
                os._exit(3)
            raise ValueError("rank 1 breaks")
        return self.lin(x)
"""


def rows(n, seed, gap=0.05):
    """`n` csv lines of 6 features in [-1, 1] and the class with the highest linear score,
    leaving out rows whose two best scores are within `gap` of each other."""
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        x = [round(rnd.uniform(-1, 1), 3) for _ in range(6)]
        s = [x[0] + x[1] - 0.5 * x[2], x[2] - x[1] + 0.3 * x[3], 0.8 * x[3] - x[0] + 0.2 * x[4]]
        if sorted(s)[2] - sorted(s)[1] < gap:
            continue
        out.append(",".join(map(str, x)) + f",{max(range(3), key=lambda k: s[k])}")
    return out


def make_project(d, nproc=1, n=4000, epochs=20, model="{type: mlp, hidden: [32, 32]}",
                 more=""):
    d = Path(d)
    (d / "data").mkdir(parents=True)
    for i in range(3):
        lines = ["a,b,c,d,e,f,label", *rows(n // 3, i)]
        (d / "data" / f"part{i}.csv").write_text("\n".join(lines) + "\n")
    write_yaml(d, nproc, epochs=epochs, model=model, more=more)
    return d


def write_yaml(d, nproc, epochs=20, model="{type: mlp, hidden: [32, 32]}", more=""):
    (Path(d) / "s2build.yaml").write_text(YAML.format(nproc=nproc, epochs=epochs, model=model,
                                                      more=more))


def sidecar(d):
    return json.loads((Path(d) / "build" / "table.onnx.json").read_text())


def entry(d):
    """The cache folder of the installed artifact's build."""
    key = sidecar(d)["build_key"]
    return Path(d) / ".s2build" / "cache" / key[:2] / key


def leftovers(d):
    """Job folders under .s2build/tmp and processes whose command line names project `d`."""
    tmp = Path(d) / ".s2build" / "tmp"
    found = [str(p) for p in tmp.iterdir()] if tmp.is_dir() else []
    for pid in os.listdir("/proc"):
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "s2build.compile.ddp" in cmd and str(d) in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    """The table built by one process."""
    d = make_project(tmp_path_factory.mktemp("one") / "p", nproc=1)
    run(["build"], d, check=0)
    return d


@pytest.fixture(scope="module")
def two(tmp_path_factory, one):
    """`one`'s project (its cache and state included), then `nproc: 2`: (project, explain's
    output, the build's output, build seconds)."""
    d = tmp_path_factory.mktemp("two") / "p"
    shutil.copytree(one, d)
    write_yaml(d, 2)
    explained = run(["explain", "table"], d, check=0).stdout
    clock = time.perf_counter()
    p = run(["build", "-v"], d, check=0)
    return d, explained, p.stdout + p.stderr, time.perf_counter() - clock


def test_changing_nproc_rebuilds_with_the_reason(two):
    d, explained, out, _ = two
    assert "table will be built because:" in explained
    assert "config changed: train.nproc (1 -> 2)" in explained
    assert re.search(r"table: built in .*config changed: train\.nproc \(1 -> 2\)", out), out
    assert "epoch 20/20" in out                     # rank 0's progress reached the build
    assert leftovers(d) == []


def test_two_processes_verify_and_match_one_within_a_point(one, two):
    d, *_ = two
    a, b = sidecar(one), sidecar(d)
    print(f"holdout accuracy: nproc 1 {a['metrics']['accuracy']:.4f}, "
          f"nproc 2 {b['metrics']['accuracy']:.4f}")
    assert abs(a["metrics"]["accuracy"] - b["metrics"]["accuracy"]) <= 0.01
    assert b["metrics"]["accuracy"] > 0.97
    v = b["verification"]
    assert v["max_abs_diff"] <= v["tolerance"] and v["argmax_agreement"] == 1.0
    assert len(b["history"]) == 20 and b["history"][-1] < b["history"][0]
    curve = b["holdout_history"]                     # rank 0's holdout curve, as one process's
    assert len(curve["loss"]) == 20 and curve["values"][-1] == pytest.approx(
        b["metrics"]["accuracy"]) and curve["rows"] == min(curve["of"], 2048)
    assert sha256(d / "build" / "table.onnx") != sha256(one / "build" / "table.onnx")


def test_dynamics_are_those_of_one_process(one, two):
    import numpy as np
    with np.load(entry(one) / "dynamics.npz") as z1, np.load(entry(two[0]) / "dynamics.npz") as z2:
        a, b = dict(z1), dict(z2)
    assert sorted(a) == sorted(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert (a["train_rows"] == b["train_rows"]).all() and (a["ckpt_epoch"] == b["ckpt_epoch"]).all()
    assert np.isfinite(b["logits"]).all() and (b["margin_late"] != 0).all()   # every row seen
    # per-row signals of two trainings of one task agree row by row
    corr = np.corrcoef(a["margin_late"].astype(float), b["margin_late"].astype(float))[0, 1]
    assert corr > 0.9, corr
    agree = (a["logits"].argmax(1) == b["logits"].argmax(1)).mean()
    assert agree > 0.97, agree


def test_a_fresh_copy_reproduces_the_bytes_and_nproc_1_restores(two, tmp_path):
    d, *_ = two
    fresh = make_project(tmp_path / "fresh", nproc=1)        # yaml says 1: --nproc overrides
    clock = time.perf_counter()
    run(["build", "--release", "--nproc", "2"], fresh, check=0)
    print(f"nproc 2 build in a fresh copy: {time.perf_counter() - clock:.1f}s")
    assert sha256(fresh / "build" / "table.onnx") == sha256(d / "build" / "table.onnx")
    assert run(["status", "--nproc", "2"], fresh).returncode == 0
    assert "config changed: train.nproc (2 -> 1)" in run(["explain", "table"], fresh,
                                                         check=0).stdout
    back = tmp_path / "back"
    shutil.copytree(d, back)
    write_yaml(back, 1)
    p = run(["build"], back, check=0)
    assert "restored from cache" in p.stdout, p.stdout
    assert leftovers(fresh) == [] and leftovers(back) == []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_of_one_process_train_the_weights_of_one_node_of_two(two, tmp_path):
    """Multi-node pass-through on one machine: two `s2build build` processes, one per "node",
    meeting by static rendezvous at 127.0.0.1; node ranks from torchrun's PET_NODE_RANK."""
    import torch
    more = f", torchrun: {{nnodes: 2, master_addr: 127.0.0.1, master_port: {_free_port()}}}"
    nodes = [make_project(tmp_path / f"node{r}", nproc=1, more=more) for r in range(2)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, "-m", "s2build", "build"], cwd=n,
                              env=dict(env, PET_NODE_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for r, n in enumerate(nodes)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sha256(nodes[0] / "build" / "table.onnx") == sha256(nodes[1] / "build" / "table.onnx")
    w_nodes = torch.load(entry(nodes[0]) / "weights.pt", weights_only=True)
    w_two = torch.load(entry(two[0]) / "weights.pt", weights_only=True)
    assert w_nodes.keys() == w_two.keys()
    assert all(torch.equal(w_nodes[k], w_two[k]) for k in w_two)


@pytest.mark.parametrize("mode, message", [
    ("raise", r"net\.py:\d+: user code net\.py:Net \(targets\.table\.model\.type\) raised "
              r"ValueError: rank 1 breaks \(rank 1 of 2\)"),
    ("exit", r"s2build\.yaml:7:\d+: rank 1 of 2 died without an error \(exit code 3\) \(the "
             r"ranks' output is in \.s2build/logs/table\.torchrun\.log\)"),
])
def test_a_crashing_rank_is_a_build_error_and_nothing_is_written(tmp_path, mode, message):
    d = make_project(tmp_path / "p", nproc=2, n=300, epochs=3,
                     model=f'{{type: "net.py:Net", args: {{mode: {mode}}}}}')
    (d / "net.py").write_text(CRASHING_NET)
    p = run(["build"], d, check=5)
    assert re.search(message, p.stderr), p.stderr
    assert not (d / "build").exists()
    assert not list((d / ".s2build" / "cache").glob("*/*"))
    assert leftovers(d) == []


def test_ctrl_c_stops_every_rank(tmp_path):
    d = make_project(tmp_path / "p", nproc=2, epochs=200)
    p = subprocess.Popen([sys.executable, "-m", "s2build", "build", "-v"], cwd=d,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in p.stdout:                       # rank 0's progress: the ranks are training
        seen.append(line)
        if "epoch" in line:
            break
    assert any("epoch" in s for s in seen), seen
    clock = time.perf_counter()
    os.killpg(p.pid, signal.SIGINT)             # what a terminal sends its foreground group
    rest = p.communicate(timeout=60)[0]
    assert p.returncode == 130, rest
    assert time.perf_counter() - clock < 20
    assert "nothing was recorded" in rest
    assert not (d / "build").exists()
    assert leftovers(d) == []


def test_a_cancel_stops_the_ranks(tmp_path):
    """watch's cancel (a threading.Event) set at rank 0's first progress report: the build
    raises Cancelled and no job folder or rank is left."""
    import threading
    from s2build.compile import distributed, train
    from s2build.data import dataset
    from s2build.data.shards import ShardStore
    from s2build.engine import fingerprint
    from s2build.project import config
    d = make_project(tmp_path / "p", nproc=2, epochs=200)
    t = config.load(str(d / "s2build.yaml")).targets["table"]
    inputs, _ = fingerprint.target_inputs(t, {})
    ds = dataset.load_dataset(t, inputs, ShardStore(str(d / ".s2build")), lean=True)
    cancel, seen = threading.Event(), []
    def progress(done, total, loss):
        seen.append(done)
        cancel.set()
    clock = time.perf_counter()
    with pytest.raises(train.Cancelled):
        distributed.train(t, ds, str(d / ".s2build"), cancel=cancel, progress=progress)
    assert seen and seen[0] < 200
    assert leftovers(d) == []
    print(f"cancelled and stopped in {time.perf_counter() - clock:.1f}s")


@pytest.mark.parametrize("value, message", [
    ("nproc: 0", "7:14: targets.t.train.nproc: must be at least 1, got 0"),
    ("nproc: -1", "7:14: targets.t.train.nproc: must be at least 1, got -1"),
    ("nproc: two", "7:14: targets.t.train.nproc: expected an integer, got 'two'"),
    ("nproc: 1.5", "7:14: targets.t.train.nproc: expected an integer, got 1.5"),
    ("torchrun: {nnodes: 0}", "7:26: targets.t.train.torchrun.nnodes: must be at least 1, got 0"),
    ("torchrun: {nnode: 2}", "7:18: unknown key 'nnode' (did you mean 'nnodes'?)"),
    ("torchrun: {master_port: 70000}", "7:31: targets.t.train.torchrun.master_port: must be at "
                                       "most 65535, got 70000"),
])
def test_bad_nproc_is_a_config_error_at_its_location(tmp_path, monkeypatch, value, message):
    from s2build.errors import ConfigError
    from s2build.project import config
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,0\n2,1\n")
    (tmp_path / "s2build.yaml").write_text("targets:\n  t:\n    sources: data/a.csv\n"
                                           f"    loader: {{label: y}}\n    train:\n"
                                           f"      epochs: 2\n      {value}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        config.load("s2build.yaml")
    assert str(e.value) == "s2build.yaml:" + message


def test_nproc_0_on_the_command_line_is_a_usage_error(tmp_path):
    make_project(tmp_path / "p", n=30)
    p = run(["build", "--nproc", "0"], tmp_path / "p", check=2)
    assert "--nproc: must be at least 1, got 0" in p.stderr


def test_torchrun_command_line_and_the_key():
    """Pure: torchrun's argv (standalone on one node; the multi-node settings passed on when
    set, left to torchrun's PET_* variables when not) and what of it enters the build key."""
    from s2build.compile import distributed
    from s2build.project import config
    from s2build.project.config import Target
    base = {"nproc": 4, "torchrun": {"nnodes": 1, "node_rank": None, "master_addr": None,
                                     "master_port": None, "rdzv_backend": None,
                                     "rdzv_endpoint": None, "rdzv_id": None}}
    t = Target("t", {"train": base}, {}, "/p")
    argv = distributed.command(t, "/p/.s2build/tmp/job")
    assert argv[:4] == [sys.executable, "-m", "s2build.compile.ddp", "--launch"]
    assert argv[argv.index("--nproc-per-node") + 1] == "4" and "--standalone" in argv
    assert argv[-3:] == ["-m", "s2build.compile.ddp", "/p/.s2build/tmp/job"]
    multi = dict(base, torchrun=dict(base["torchrun"], nnodes=3, master_addr="10.0.0.1",
                                     master_port=29400))
    argv = distributed.command(Target("t", {"train": multi}, {}, "/p"), "J")
    assert "--standalone" not in argv and "--node-rank" not in argv
    assert argv[argv.index("--nnodes") + 1] == "3"
    assert argv[argv.index("--master-addr") + 1] == "10.0.0.1"
    assert argv[argv.index("--master-port") + 1] == "29400"
    assert distributed.world_size(Target("t", {"train": multi}, {}, "/p")) == 12
    key = config.key_config(Target("t", {"train": multi}, {}, "/p"))
    assert key["train"] == {"nproc": 4, "torchrun": {"nnodes": 3}}


def test_the_example_documents_nproc():
    text = (ROOT / "s2build.yaml.example").read_text()
    assert "nproc: 1" in text and "torchrun:" in text

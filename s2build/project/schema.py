"""The schema of s2build.yaml: every key, its type, default and bounds, per section.

`Key` describes one entry; LOADERS and MODELS hold one schema per loader format and model
type; TARGET and TOP the target's and the file's own keys. Tasks, losses and metrics come
from the registry (registry.py). NOT_IN_KEY names the resolved keys that cannot change an
artifact's bytes. Standard library only: it is on the no-op path.
"""

import re

from s2build.project import registry

CONFIG_NAME = "s2build.yaml"
REQUIRED = object()
USER_REF = re.compile(r"^(?P<path>[^:]+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

class Key:
    """A schema entry: `kind` names a checker below; `low`/`high` bound numbers (inclusive low,
    exclusive high when `open_high`); `choices` restricts strings. For an intlist, `low`
    bounds each item, `choices` lists the allowed lengths and `high` says them in words.
    (Plain classes, not dataclasses, on the no-op path: importing dataclasses costs ~8 ms.)"""

    __slots__ = ("kind", "default", "choices", "low", "high", "open_high", "item")

    def __init__(self, kind, default=REQUIRED, choices=(), low=None, high=None, open_high=False,
                 item=None):
        self.kind, self.default, self.choices = kind, default, choices
        self.low, self.high, self.open_high = low, high, open_high
        self.item = item                          # maplist: the schema of each mapping


# Loader formats: each has its own keys. Tasks: classification (one class per row, softmax),
# regression (one or more values), multilabel (one or more independent 0/1 outputs, sigmoid).
TASKS = tuple(registry.TASKS)


TABLES = ("csv", "parquet", "feather")     # formats read as tables of raw columns (pyarrow)
COLUMN_KINDS = ("number", "category")
_TABLE_KEYS = dict(features=Key("strlist", None),      # None: every column but the label
                   label=Key("str", REQUIRED),
                   columns=Key("colkinds", None))      # {column: number|category}; else inferred

def _loader(**keys):
    common = {"task": Key("str", "classification", choices=TASKS),
              "classes": Key("classes", None),      # int N (labels 0..N-1), a list, or inferred
              "shape": Key("intlist", None, low=1)}        # reshape each row's features, e.g. [1, 8, 8]
    return {"format": Key("str"), **common, **keys}


LOADERS = {
    "csv": _loader(**_TABLE_KEYS, delimiter=Key("char", ",")),
    "parquet": _loader(**_TABLE_KEYS),                   # a file or a folder's files; row groups
    "feather": _loader(**_TABLE_KEYS),                   # Arrow IPC file (.arrow, .feather)
    "jsonl": _loader(features=Key("strlist", REQUIRED),  # fields: numbers, lists or strings
                     label=Key("str", REQUIRED),
                     text=Key("str", "error", choices=("error", "digits", "hash")),
                     buckets=Key("int", 256, low=1)),    # text: hash -> this many features
    "npz": _loader(features=Key("str", "x"), label=Key("str", "y")),   # array names
    "npy": _loader(label_column=Key("int", -1)),         # 2-D array; one column is the label
    "images": _loader(size=Key("intlist", None, low=1, choices=(2,),  # [height, width]
                                high="[height, width]"),                      # to resize to
                      channels=Key("int", 1, choices=(), low=1, high=3),
                      scale=Key("float", 1 / 255, low=0.0)),  # pixel * scale
}
for _name, _schema in LOADERS.items():
    _schema["format"] = Key("str", _name)

# Model types: built-ins by name; a user model is `path/file.py:Name` with `args`.
MODELS = {
    "mlp": {
        "type": Key("str", "mlp"),
        "hidden": Key("intlist", [64, 64], low=1),   # widths of the hidden layers
        "activation": Key("str", "relu", choices=("relu", "tanh", "gelu", "silu")),
        "dropout": Key("float", 0.0, low=0.0, high=1.0, open_high=True),
        "normalize": Key("bool", True),           # standardise features inside the network
    },
    "cnn": {
        "type": Key("str", "cnn"),
        "channels": Key("intlist", [16, 32], low=1),  # one conv layer per entry
        "kernel": Key("int", 3, low=1),
        "padding": Key("str", "zeros", choices=("zeros", "circular")),
        "pool": Key("int", 2, low=1),             # max-pool factor after the convs (1: none)
        "head": Key("str", "dense", choices=("dense", "conv")),  # conv: one output per cell
        "hidden": Key("intlist", [], low=1),      # dense widths, or 1x1-conv widths for head conv
        "activation": Key("str", "relu", choices=("relu", "tanh", "gelu", "silu")),
        "dropout": Key("float", 0.0, low=0.0, high=1.0, open_high=True),
        "normalize": Key("bool", False),          # standardise inputs (one mean/std)
    },
}
USER_MODEL = {"type": Key("str"), "args": Key("map", {})}

TRAIN = {
    "epochs": Key("int", 30, low=1),
    "batch_size": Key("int", 32, low=1),
    "lr": Key("float", 1e-3, low=1e-12),
    "optimizer": Key("str", "adam", choices=("adam", "adamw", "sgd")),
    "weight_decay": Key("float", 0.0, low=0.0),
    "momentum": Key("float", 0.9, low=0.0),      # sgd only
    "seed": Key("int", 0),
    "device": Key("str", "cpu", choices=("cpu", "cuda", "auto")),
    # a memory budget ("1GB", "512MB", bytes): a table that would need more is streamed from
    # its shards block by block (data/stream.py); in the key, as streaming changes the order
    "memory": Key("size", None),
    # processes that train together under torchrun with DistributedDataParallel (gloo on the
    # cpu, nccl on cuda; compile/distributed.py); in the key with torchrun.nnodes (world size)
    "nproc": Key("int", 1, low=1),
    "torchrun": Key("section", {}),                # TORCHRUN: several nodes
}

# torchrun's multi-node settings (train.torchrun); only `nnodes` enters the build key (the
# world size is nproc x nnodes). With nnodes 1 the run is `--standalone` and the others are
# unused; unset ones come from torchrun's own environment (PET_NODE_RANK, PET_MASTER_ADDR, ...).
TORCHRUN = {
    "nnodes": Key("int", 1, low=1),
    "node_rank": Key("int", None, low=0),          # usually PET_NODE_RANK on each node
    "master_addr": Key("str", None),               # static rendezvous: rank 0's host
    "master_port": Key("int", None, low=1, high=65535),
    "rdzv_backend": Key("str", None),              # e.g. c10d
    "rdzv_endpoint": Key("str", None),             # host:port
    "rdzv_id": Key("str", None),
}

HOLDOUT = {
    "fraction": Key("float", 0.2, low=0.0, high=1.0, open_high=True),
    "seed": Key("int", 0),
    "sources": Key("strlist", []),
}

EXPORT = {
    "exporter": Key("str", "dynamo", choices=("dynamo", "legacy")),
    "opset": Key("int", None, low=7),
    # a second output `embedding`: the input of the network's last linear layer, which a
    # downstream target can read (upstream: {use: features})
    "embedding": Key("bool", False),
}

# Behaviour specs: the target's tests (s2build/specs.py checks their contents and runs them).
# Each names one kind: example, gate or invariance; `over` picks the rows (holdout or a file).
SPEC = {
    "name": Key("str", REQUIRED),
    "example": Key("tree", None),        # {input: {FEATURE: N} | file, line; expect; tolerance}
    "gate": Key("str", None),            # "METRIC OP BOUND", e.g. "accuracy >= 0.95"
    "invariance": Key("tree", None),     # {noise, seed, set, shift, min_agreement, tolerance}
    "over": Key("str", None),            # gate/invariance rows: holdout (default) or a glob
}

# Reading another target's artifact (issue 14): its ONNX file runs through onnxruntime over this
# target's rows. `features`: its output `output` (default `embedding`, which the upstream
# exports with `export.embedding: true`) is what this network trains on, and the artifact is
# the two graphs composed (it takes the upstream's inputs). `soft_labels` (classification,
# distillation): the loss mixes the labels with the upstream's `logits` at `temperature`,
# `weight` the share of the upstream's part. In the key: the upstream *artifact digest* (not
# its name or build key), so a byte-identical upstream rebuild rebuilds nothing here.
UPSTREAM = {
    "target": Key("str", REQUIRED),
    "use": Key("str", "features", choices=("features", "soft_labels")),
    "output": Key("str", None),
    "temperature": Key("float", 2.0, low=0.01),
    "weight": Key("float", 0.5, low=0.0, high=1.0),
}

TARGET = {
    "description": Key("str", ""),
    "sources": Key("strlist", REQUIRED),
    "loader": Key("section", {}),
    "model": Key("section", {}),
    "loss": Key("str", None),
    "metrics": Key("metrics", None),     # names, path/file.py:fn, or {name, higher_is_better}
    "train": Key("section", {}),
    "holdout": Key("section", {}),
    "output": Key("str", None),
    "deps": Key("strlist", []),
    "upstream": Key("section", None),    # UPSTREAM: read another target's artifact
    "export": Key("section", {}),
    "specs": Key("maplist", [], item=SPEC),
}

# A user metric's mapping entry: `{name: path/file.py:fn, higher_is_better: BOOL}`.
USER_METRIC = {"name": Key("str"), "higher_is_better": Key("bool", None)}

# The remote cache (store/remote.py): an fsspec URL (s3://bucket/prefix, gs://..., a shared
# folder); read-only for pull-request builds; `options` go to the fsspec filesystem (e.g.
# endpoint_url; credentials belong in the environment, never here). Not in the build key: where
# an entry is kept cannot change its bytes. S2BUILD_REMOTE_CACHE / S2BUILD_REMOTE_READONLY=1
# override `remote` and `mode`.
CACHE = {"remote": Key("str", None),
         "mode": Key("str", "read-write", choices=("read-write", "read-only")),
         "options": Key("map", {})}

# A rule: a command that generates data files (project/rules.py checks the parts the schema
# cannot: outputs inside the project, inputs naming rules, env names). `command` is a list of
# arguments run without a shell, or a string with `shell: true`; an output ending in `/` is a
# folder (every file the command writes under it).
RULE = {"description": Key("str", ""),
        "command": Key("command", REQUIRED),
        "shell": Key("bool", False),
        "inputs": Key("strlist", []),       # files, globs, other rules' names or outputs
        "outputs": Key("strlist", REQUIRED),
        "env": Key("tree", {})}             # extra variables: {NAME: string or number}
RULE_NAME = TARGET_NAME

TOP = {"version": Key("int", 1, low=1, high=1), "targets": Key("map", REQUIRED),
       "rules": Key("map", {}),                        # NAME: RULE (project/rules.py)
       "allow_outside_sources": Key("bool", False),    # sources may lie outside the project
       "cache": Key("section", {})}                    # CACHE

# Keys of the resolved config that cannot change the artifact's bytes: not in the build key.
# `deps` only orders the build (`upstream.target` is replaced by the upstream artifact's digest,
# engine/fingerprint.py). Glob patterns
# (`sources`, `holdout.sources`) are replaced by the digests of the files they match; the
# built-in `metrics` by the artifact recording every built-in metric of its task (see
# key_config), so the list only selects what is reported and gated.
NOT_IN_KEY = ("description", "output", "specs", "deps", "sources")

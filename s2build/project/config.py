"""Reading and validating s2build.yaml.

The file declares targets (trained networks). `load(path)` returns a `Project` whose targets
carry their *resolved* config: every key present, defaults filled in, plain JSON-able values.
Every error names `s2build.yaml:LINE:COL`, and unknown keys get a "did you mean".

    version: 1                  # optional; the only version is 1
    allow_outside_sources: false  # true: sources may be absolute or lead out with `..`
    targets:
      NAME:
        sources: [GLOB, ...]    # data files, relative to the yaml's folder
        loader:  {format: csv, features: [...], label: COL, task: classification, classes: 3}
        model:   {type: mlp, hidden: [64, 64], activation: relu, dropout: 0.0}
        loss:    cross_entropy  # or path/file.py:function
        metrics: [accuracy]     # names or path/file.py:function
        train:   {epochs: 30, batch_size: 32, lr: 0.001, optimizer: adam, seed: 0, device: cpu}
        holdout: {fraction: 0.2, seed: 0}       # or {sources: [GLOB, ...]}
        output:  build/NAME.onnx  # inside the project, .onnx, off every input (project/paths.py)
        deps:    [OTHER_TARGET]
        export:  {exporter: dynamo}

s2build.yaml.example documents every key. YAML merge keys (`<<: *defaults`) are supported.
This module imports only the standard library and yaml: it is on the no-op path.
"""

import difflib
import os
import re

import yaml

from s2build.errors import ConfigError
from s2build.project import registry

CONFIG_NAME = "s2build.yaml"
REQUIRED = object()
USER_REF = re.compile(r"^(?P<path>[^:]+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

class Key:
    """A schema entry: `kind` names a checker below; `low`/`high` bound numbers (inclusive low,
    exclusive high when `open_high`); `choices` restricts strings. (Plain classes, not
    dataclasses, on the no-op path: importing dataclasses costs ~8 ms.)"""

    __slots__ = ("kind", "default", "choices", "low", "high", "open_high", "item")

    def __init__(self, kind, default=REQUIRED, choices=(), low=None, high=None, open_high=False,
                 item=None):
        self.kind, self.default, self.choices = kind, default, choices
        self.low, self.high, self.open_high = low, high, open_high
        self.item = item                          # maplist: the schema of each mapping


# Loader formats: each has its own keys. Tasks: classification (one class per row, softmax),
# regression (one or more values), multilabel (one or more independent 0/1 outputs, sigmoid).
TASKS = tuple(registry.TASKS)


def _loader(**keys):
    common = {"task": Key("str", "classification", choices=TASKS),
              "classes": Key("classes", None),      # int N (labels 0..N-1), a list, or inferred
              "shape": Key("intlist", None)}        # reshape each row's features, e.g. [1, 8, 8]
    return {"format": Key("str"), **common, **keys}


LOADERS = {
    "csv": _loader(features=Key("strlist", None),   # None: every column but the label
                   label=Key("str", REQUIRED), delimiter=Key("str", ",")),
    "jsonl": _loader(features=Key("strlist", REQUIRED),  # fields: numbers, lists or strings
                     label=Key("str", REQUIRED),
                     text=Key("str", "error", choices=("error", "digits", "hash")),
                     buckets=Key("int", 256, low=1)),    # text: hash -> this many features
    "npz": _loader(features=Key("str", "x"), label=Key("str", "y")),   # array names
    "npy": _loader(label_column=Key("int", -1)),         # 2-D array; one column is the label
    "images": _loader(size=Key("intlist", None),         # [height, width] to resize to
                      channels=Key("int", 1, choices=(), low=1, high=3),
                      scale=Key("float", 1 / 255, low=0.0)),  # pixel * scale
}
for _name, _schema in LOADERS.items():
    _schema["format"] = Key("str", _name)

# Model types: built-ins by name; a user model is `path/file.py:Name` with `args`.
MODELS = {
    "mlp": {
        "type": Key("str", "mlp"),
        "hidden": Key("intlist", [64, 64]),      # widths of the hidden layers
        "activation": Key("str", "relu", choices=("relu", "tanh", "gelu", "silu")),
        "dropout": Key("float", 0.0, low=0.0, high=1.0, open_high=True),
        "normalize": Key("bool", True),           # standardise features inside the network
    },
    "cnn": {
        "type": Key("str", "cnn"),
        "channels": Key("intlist", [16, 32]),     # one conv layer per entry
        "kernel": Key("int", 3, low=1),
        "padding": Key("str", "zeros", choices=("zeros", "circular")),
        "pool": Key("int", 2, low=1),             # max-pool factor after the convs (1: none)
        "head": Key("str", "dense", choices=("dense", "conv")),  # conv: one output per cell
        "hidden": Key("intlist", []),             # dense widths, or 1x1-conv widths for head conv
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
}

HOLDOUT = {
    "fraction": Key("float", 0.2, low=0.0, high=1.0, open_high=True),
    "seed": Key("int", 0),
    "sources": Key("strlist", []),
}

EXPORT = {
    "exporter": Key("str", "dynamo", choices=("dynamo", "legacy")),
    "opset": Key("int", None, low=7),
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
    "export": Key("section", {}),
    "specs": Key("maplist", [], item=SPEC),
}

# A user metric's mapping entry: `{name: path/file.py:fn, higher_is_better: BOOL}`.
USER_METRIC = {"name": Key("str"), "higher_is_better": Key("bool", None)}

TOP = {"version": Key("int", 1, low=1, high=1), "targets": Key("map", REQUIRED),
       "allow_outside_sources": Key("bool", False)}    # sources may lie outside the project

# Keys of the resolved config that cannot change the artifact's bytes: not in the build key.
# `deps` only orders the build (no target reads another's artifact yet). Glob patterns
# (`sources`, `holdout.sources`) are replaced by the digests of the files they match; the
# built-in `metrics` by the artifact recording every built-in metric of its task (see
# key_config), so the list only selects what is reported and gated.
NOT_IN_KEY = ("description", "output", "specs", "deps", "sources")


class Target:
    """One target: `config` is resolved (all keys, JSON-able); `locs` maps key paths inside the
    target, e.g. ('train', 'epochs'), to 's2build.yaml:L:C' of their value."""

    def __init__(self, name, config, locs, root):
        self.name, self.config, self.locs, self.root = name, config, locs, root

    def loc(self, *path):
        """Location of the deepest known prefix of `path` (falls back to the target itself)."""
        while path and path not in self.locs:
            path = path[:-1]
        return self.locs.get(path)

    @property
    def output(self):
        return os.path.join(self.root, self.config["output"])

    def user_refs(self):
        """[(role, key path, relpath, name)] for every `file.py:name` the target names."""
        refs = []
        cfg = self.config
        candidates = [(("loss",), cfg["loss"]), (("model", "type"), cfg["model"]["type"])]
        candidates += [(("metrics", i), m) if isinstance(m, str) else (("metrics", i, "name"),
                                                                     m["name"])
                       for i, m in enumerate(cfg["metrics"])]
        for path, value in candidates:
            m = USER_REF.match(value or "")
            if m:
                refs.append((path[0], path, m["path"], m["name"]))
        return refs


class Project:
    def __init__(self, path, root):
        self.path = path           # absolute path of s2build.yaml
        self.root = root           # its folder; all relative paths are relative to it
        self.targets = {}          # name -> Target, in yaml order

    @property
    def state_dir(self):
        return os.path.join(self.root, ".s2build")


# --- YAML with positions -------------------------------------------------------------------

class _Y:
    """A YAML value with its position: `value` is a dict of str -> (key_loc, _Y), a list of _Y,
    or a plain scalar."""

    __slots__ = ("value", "loc", "kind")

    def __init__(self, value, loc, kind):
        self.value, self.loc, self.kind = value, loc, kind


def _mark(fname, node):
    return f"{fname}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _convert(node, fname, constructor):
    """_Y of a composed node. Merge keys (`<<: *a` or `<<: [*a, *b]`) give defaults: an
    explicit key of the mapping wins over a merged one wherever it stands, an earlier merged
    mapping over a later one; the same explicit key twice is an error."""
    if isinstance(node, yaml.MappingNode):
        out, merged = {}, {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                sources = vnode.value if isinstance(vnode, yaml.SequenceNode) else [vnode]
                for src in sources:
                    m = _convert(src, fname, constructor)
                    if m.kind != "map":
                        raise ConfigError("'<<' merges only mappings", _mark(fname, src))
                    for k, v in m.value.items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(knode, yaml.ScalarNode):
                raise ConfigError("keys must be plain strings", _mark(fname, knode))
            key = str(constructor.construct_object(knode))
            if key in out:
                raise ConfigError(f"duplicate key '{key}'", _mark(fname, knode),
                                  f"first given at {out[key][0]}")
            out[key] = (_mark(fname, knode), _convert(vnode, fname, constructor))
        for k, v in merged.items():
            out.setdefault(k, v)
        return _Y(out, _mark(fname, node), "map")
    if isinstance(node, yaml.SequenceNode):
        return _Y([_convert(n, fname, constructor) for n in node.value],
                  _mark(fname, node), "list")
    return _Y(constructor.construct_object(node), _mark(fname, node), "scalar")


def _parse_yaml(text, fname):
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{fname}:{mark.line + 1}:{mark.column + 1}" if mark else fname
        cm, hint = e.context_mark, None
        if e.context and cm is not None and mark is not None and cm.line != mark.line:
            hint = f"{e.context} started at {fname}:{cm.line + 1}:{cm.column + 1}"
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", where, hint) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", fname) from None
    if node is None:
        raise ConfigError("the file is empty", fname, "declare at least one target under 'targets:'")
    return _convert(node, fname, yaml.constructor.SafeConstructor())


# --- Validation ----------------------------------------------------------------------------

_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "strlist": "a list of strings", "intlist": "a list of integers",
               "map": "a mapping", "section": "a mapping",
               "classes": "an integer or a list of class names",
               "maplist": "a list of mappings", "tree": "a mapping",
               "metrics": "a list of metric names or {name, higher_is_better} mappings"}


def _type_error(path, key, y):
    shown = y.value if y.kind == "scalar" else y.kind
    return ConfigError(f"{'.'.join(map(str, path))}: expected {_TYPE_NAMES[key.kind]}, "
                       f"got {shown!r}", y.loc)


def _plain(y):
    if y.kind == "map":
        return {k: _plain(v) for k, (_, v) in y.value.items()}
    if y.kind == "list":
        return [_plain(v) for v in y.value]
    return y.value


def _check_value(path, key, y, locs):
    """Check `y` against `key`; return its plain value (sections are handled by the caller)."""
    v = y.value
    locs[path] = y.loc
    if key.kind == "str":
        if y.kind != "scalar" or not isinstance(v, str):
            raise _type_error(path, key, y)
        if key.choices and v not in key.choices:
            close = difflib.get_close_matches(v, key.choices, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(key.choices)
            raise ConfigError(f"{'.'.join(map(str, path))}: unknown value '{v}'", y.loc, hint)
        return v
    if key.kind in ("int", "float"):
        ok = y.kind == "scalar" and isinstance(v, (int, float)) and not isinstance(v, bool)
        if key.kind == "int":
            ok = ok and isinstance(v, int)
        if not ok:
            raise _type_error(path, key, y)
        name = ".".join(map(str, path))
        if key.low is not None and v < key.low:
            raise ConfigError(f"{name}: must be at least {key.low:g}, got {v}", y.loc)
        if key.high is not None and (v >= key.high if key.open_high else v > key.high):
            bound = "below" if key.open_high else "at most"
            raise ConfigError(f"{name}: must be {bound} {key.high:g}, got {v}", y.loc)
        return float(v) if key.kind == "float" else v
    if key.kind == "bool":
        if y.kind != "scalar" or not isinstance(v, bool):
            raise _type_error(path, key, y)
        return v
    if key.kind in ("strlist", "intlist"):
        if key.kind == "strlist" and y.kind == "scalar" and isinstance(v, str):
            return [v]                          # a single string stands for a list of one
        want = str if key.kind == "strlist" else int
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind != "scalar" or not isinstance(item.value, want) \
                    or isinstance(item.value, bool):
                raise _type_error(path + (i,), key, item)
            out.append(item.value)
        return out
    if key.kind == "classes":
        if y.kind == "scalar" and isinstance(v, int) and not isinstance(v, bool):
            if v < 2:
                raise ConfigError(f"{'.'.join(path)}: need at least 2 classes, got {v}", y.loc)
            return v
        if y.kind == "list" and all(i.kind == "scalar" and isinstance(i.value, (str, int))
                                    for i in y.value):
            names = [str(i.value) for i in y.value]
            if len(set(names)) != len(names) or len(names) < 2:
                raise ConfigError(f"{'.'.join(path)}: need at least 2 distinct class names",
                                  y.loc)
            return names
        raise _type_error(path, key, y)
    if key.kind == "map":
        if y.kind != "map":
            raise _type_error(path, key, y)
        return _plain(y)
    if key.kind == "tree":                   # a mapping checked later; every node's location kept
        if y.kind != "map":
            raise _type_error(path, key, y)
        return _plain_locs(path, y, locs)
    if key.kind == "metrics":                # names, or mappings for user metrics
        if y.kind == "scalar" and isinstance(v, str):
            return [v]
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind == "map":
                out.append(_check_section(path + (i,), USER_METRIC, item, locs))
            elif item.kind == "scalar" and isinstance(item.value, str):
                out.append(item.value)
            else:
                raise _type_error(path + (i,), key, item)
        return out
    if key.kind == "maplist":                # a list of mappings, each checked against key.item
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind != "map":
                raise ConfigError(f"{'.'.join(map(str, path + (i,)))}: expected a mapping, "
                                  f"got {item.value if item.kind == 'scalar' else 'a list'!r}",
                                  item.loc)
            out.append(_check_section(path + (i,), key.item, item, locs))
        return out
    raise AssertionError(key.kind)


def _plain_locs(path, y, locs):
    """Plain value of `y`, recording the location of every node (keys as path + (k, '@key'))."""
    locs[path] = y.loc
    if y.kind == "map":
        out = {}
        for k, (kloc, v) in y.value.items():
            locs[path + (k, "@key")] = kloc
            out[k] = _plain_locs(path + (k,), v, locs)
        return out
    if y.kind == "list":
        return [_plain_locs(path + (i,), v, locs) for i, v in enumerate(y.value)]
    return y.value


def _check_section(path, schema, y, locs):
    """Validate mapping `y` against `schema`; unknown keys get a did-you-mean."""
    if y is None:
        items = {}
    elif y.kind != "map":
        got = "a list" if y.kind == "list" else repr(y.value)
        got = got if len(got) <= 40 else got[:37] + "..."
        raise ConfigError(f"{'.'.join(map(str, path)) or 'the file'}: expected a mapping, "
                          f"got {got}", y.loc)
    else:
        items = y.value
    for k, (kloc, _) in items.items():
        if k not in schema:
            close = difflib.get_close_matches(k, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                "known keys: " + ", ".join(sorted(schema))
            raise ConfigError(f"unknown key '{k}'", kloc, hint)
    out = {}
    for k, key in schema.items():
        if k not in items:
            if key.default is REQUIRED:
                where = y.loc if y is not None else None
                raise ConfigError(f"{'.'.join(map(str, path))}: missing required key '{k}'", where)
            out[k] = key.default.copy() if isinstance(key.default, (list, dict)) else key.default
            continue
        kloc, vy = items[k]
        locs[path + (k,) + ("@key",)] = kloc
        if vy.kind == "scalar" and vy.value is None and key.default is not REQUIRED \
                and key.kind != "section":
            out[k] = key.default                # `key:` with no value means the default
            locs[path + (k,)] = vy.loc
            continue
        if key.kind == "section":
            locs[path + (k,)] = vy.loc
            out[k] = vy                          # resolved by the caller with its own schema
        else:
            out[k] = _check_value(path + (k,), key, vy, locs)
    return out


def _variant(path, table, y, selector, default, locs, user_ok=False):
    """Validate a section whose schema depends on one of its keys (loader format, model type)."""
    chosen, sel_y = default, None
    if y is not None and y.kind == "map" and selector in y.value:
        sel_y = y.value[selector][1]
        if sel_y.kind == "scalar" and isinstance(sel_y.value, str):
            chosen = sel_y.value
    if chosen in table:
        return _check_section(path, table[chosen], y, locs)
    if user_ok and USER_REF.match(chosen or ""):
        return _check_section(path, USER_MODEL, y, locs)
    where = sel_y.loc if sel_y is not None else (y.loc if y is not None else None)
    close = difflib.get_close_matches(str(chosen), list(table), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(table) + \
        (", or path/file.py:Name" if user_ok else "")
    raise ConfigError(f"{'.'.join(path)}.{selector}: unknown {selector} '{chosen}'", where, hint)


def _check_target(name, ty, root, locs):
    t = _check_section(("targets", name), TARGET, ty, locs)
    base = ("targets", name)
    t["loader"] = _variant(base + ("loader",), LOADERS, t["loader"] or None, "format", "csv", locs)
    if t["loader"]["format"] == "images" and t["loader"]["task"] != "classification":
        raise ConfigError("loader.task: image folders give classes (one folder per class)",
                          locs.get(base + ("loader", "task")))
    t["model"] = _variant(base + ("model",), MODELS, t["model"] or None, "type", "mlp", locs,
                          user_ok=True)
    for sec, schema in (("train", TRAIN), ("holdout", HOLDOUT), ("export", EXPORT)):
        t[sec] = _check_section(base + (sec,), schema, t[sec] or None, locs)
    task = t["loader"].get("task", "classification")
    if not t["sources"]:
        raise ConfigError(f"target '{name}': 'sources' is empty", locs.get(base + ("sources",)),
                          "list at least one glob of data files")
    _check_scoring(t, task, base, locs)
    if t["output"] is None:
        t["output"] = f"build/{name}.onnx"
    if t["holdout"]["sources"] and ("targets", name, "holdout", "fraction", "@key") in locs:
        raise ConfigError("holdout: give either 'fraction' or 'sources', not both",
                          locs[base + ("holdout", "fraction")])
    return t


def _check_scoring(t, task, base, locs):
    """Fill in the task's default loss and metrics; check the named ones exist and fit."""
    if t["loss"] is None:
        t["loss"] = registry.TASKS[task].default_loss
    elif t["loss"] not in registry.LOSSES and not USER_REF.match(t["loss"]):
        _unknown_name(t["loss"], list(registry.LOSSES), "loss", locs[base + ("loss",)])
    elif t["loss"] in registry.LOSSES and task not in registry.LOSSES[t["loss"]].tasks:
        raise ConfigError(f"loss '{t['loss']}' does not fit task '{task}'", locs[base + ("loss",)],
                          f"use {registry.TASKS[task].default_loss}")
    if t["metrics"] is None:
        t["metrics"] = list(registry.TASKS[task].default_metrics)
        return
    seen = {}
    for i, m in enumerate(t["metrics"]):
        loc = locs[base + ("metrics", i)]
        if isinstance(m, dict):
            name_loc = locs[base + ("metrics", i, "name")]
            if not USER_REF.match(m["name"]):
                hint = f"write just '{m['name']}': a built-in metric's direction is known" \
                    if m["name"] in registry.METRICS else "write path/file.py:function"
                raise ConfigError(f"metric '{m['name']}': a mapping names a user metric",
                                  name_loc, hint)
            if m["higher_is_better"] is None:
                raise ConfigError(f"metric '{m['name']}': missing 'higher_is_better'", loc,
                                  "say which way is better: true (like accuracy) or false "
                                  "(like an error rate)")
            ref, name = m["name"], m["name"].rpartition(":")[2]
        elif USER_REF.match(m):
            raise ConfigError(f"metric '{m}': say which way is better", loc,
                              f"write {{name: \"{m}\", higher_is_better: true}} (or false, "
                              "for an error or a loss)")
        elif m not in registry.METRICS:
            _unknown_name(m, list(registry.METRICS), "metric", loc)
        elif task not in registry.METRICS[m].tasks:
            raise ConfigError(f"metric '{m}' does not fit task '{task}'", loc,
                              "use one of: " + ", ".join(registry.metrics_for(task)))
        else:
            ref, name = m, m
        if name in seen:
            raise ConfigError(f"metric '{ref}' is reported as '{name}', like the metric at "
                              f"{seen[name]}", loc, "give each metric its own name")
        seen[name] = loc


def _unknown_name(value, known, what, loc):
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else \
        f"built-in {what}es: " + ", ".join(known) + "; or path/file.py:function"
    if what == "metric":
        hint = hint.replace("metrices", "metrics")
    raise ConfigError(f"unknown {what} '{value}'", loc, hint)


def load(path):
    """Read, validate and resolve s2build.yaml at `path`. Raises ConfigError."""
    path = os.path.abspath(path)
    fname = os.path.relpath(path)
    try:
        with open(path, "rb") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"no {os.path.basename(path)} here", os.path.dirname(path) or ".",
                          "create one (see s2build.yaml.example) or pass -f FILE") from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", fname) from None
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", fname) from None
    root = os.path.dirname(path)
    top_y = _parse_yaml(text, fname)
    locs = {}
    top = _check_section((), TOP, top_y, locs)
    project = Project(path=path, root=root)
    targets_y = top_y.value["targets"][1]
    if not top["targets"]:
        raise ConfigError("no targets declared", targets_y.loc, "add one under 'targets:'")
    for name, (kloc, ty) in targets_y.value.items():
        if not TARGET_NAME.match(name):
            raise ConfigError(f"invalid target name '{name}'", kloc,
                              "use letters, digits, '_', '.' and '-'")
        tlocs = {("targets", name, "@key"): kloc}
        cfg = _check_target(name, ty, root, tlocs)
        short = {k[2:]: v for k, v in tlocs.items()}
        short[()] = kloc
        target = Target(name=name, config=cfg, locs=short, root=root)
        for _role, kpath, rel, _fn in target.user_refs():
            if not os.path.isfile(os.path.join(root, rel)):
                raise ConfigError(f"user file '{rel}' not found", target.loc(*kpath),
                                  "the path is relative to s2build.yaml's folder")
        if cfg["specs"]:
            from s2build.specs.parse import parse as parse_specs     # standard library only
            parse_specs(target)                          # a bad spec is a config error
        project.targets[name] = target
    outputs = {}
    for t in project.targets.values():
        out = os.path.normpath(t.config["output"])
        if out in outputs:
            raise ConfigError(f"output '{t.config['output']}' is also the output of target "
                              f"'{outputs[out]}'", t.loc("output"))
        outputs[out] = t.name
    from s2build.project import paths                   # outputs inside, off every input
    paths.check(project, top["allow_outside_sources"])
    return project


def find(start=None):
    """Path of the nearest s2build.yaml at or above `start` (default: cwd), else None."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        p = os.path.join(d, CONFIG_NAME)
        if os.path.isfile(p):
            return p
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def key_config(target):
    """The part of the resolved config that determines the artifact (input to the build key):
    everything but NOT_IN_KEY, `holdout` without its glob patterns, and `metrics` reduced to
    the user-code metrics (`file.py:function`, in order: the artifact records each of them,
    besides every built-in metric of the task)."""
    out = {k: v for k, v in target.config.items() if k not in NOT_IN_KEY}
    if isinstance(out.get("holdout"), dict):
        out["holdout"] = {k: v for k, v in out["holdout"].items() if k != "sources"}
    if isinstance(out.get("metrics"), list):
        out["metrics"] = [m for m in out["metrics"]
                          if isinstance(m, dict) or USER_REF.match(m or "")]
    return out

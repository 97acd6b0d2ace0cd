"""Reading and validating s2build.yaml.

The file declares targets (trained networks). `load(path)` returns a `Project` whose targets
carry their *resolved* config: every key present, defaults filled in, plain JSON-able values.
Every error names `s2build.yaml:LINE:COL`, and unknown keys get a "did you mean".

    version: 1                  # optional; the only version is 1
    allow_outside_sources: false  # true: sources may be absolute or lead out with `..`
    cache: {remote: s3://bucket/prefix, mode: read-write}  # a shared cache (store/remote.py)
    rules:                      # commands that generate data files (project/rules.py)
      NAME: {command: [python, gen/make.py, data/x.csv], inputs: [...], outputs: [data/x.csv]}
    targets:
      NAME:
        sources: [GLOB, ...]    # data files, relative to the yaml's folder
        loader:  {format: csv, features: [...], label: COL, task: classification, classes: 3}
        model:   {type: mlp, hidden: [64, 64], activation: relu, dropout: 0.0}
        loss:    cross_entropy  # or path/file.py:function
        metrics: [accuracy]     # names or path/file.py:function
        train:   {epochs: 30, batch_size: 32, lr: 0.001, optimizer: adam, seed: 0, device: cpu,
                  nproc: 1}     # nproc > 1: torchrun + DDP (compile/distributed.py)
        holdout: {fraction: 0.2, seed: 0}       # or {sources: [GLOB, ...]}
        output:  build/NAME.onnx  # inside the project, .onnx, off every input (project/paths.py)
        deps:    [OTHER_TARGET]
        export:  {exporter: dynamo}

s2build.yaml.example documents every key. YAML merge keys (`<<: *defaults`) are supported.
This module imports only the standard library and yaml: it is on the no-op path.
"""

import os

from s2build.errors import ConfigError
from s2build.project.schema import CACHE, CONFIG_NAME, NOT_IN_KEY, TARGET_NAME, TOP, USER_REF
from s2build.project.schema import TASKS  # noqa: F401  (re-exported: config.TASKS)
from s2build.project.validate import check_section, check_target
from s2build.project.yamlpos import parse_yaml

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
        self.cache = {"remote": None, "mode": "read-write", "options": {}}   # schema.CACHE
        self.cache_locs = {}       # ('cache', key) -> 's2build.yaml:L:C'
        self.rules = {}            # name -> rules.Rule, in yaml order (project/rules.py)

    @property
    def state_dir(self):
        return os.path.join(self.root, ".s2build")



def _close_file(root, rel):
    """A fix for a user file that is not there: a similar .py file beside where it was looked."""
    import difflib
    folder = os.path.dirname(rel)
    try:
        names = [n for n in os.listdir(os.path.join(root, folder)) if n.endswith(".py")]
    except OSError:
        names = []
    close = difflib.get_close_matches(os.path.basename(rel), names, n=1)
    if close:
        return f"did you mean '{os.path.join(folder, close[0])}'?"
    return "the path is relative to s2build.yaml's folder"


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
        line = text[:e.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte {e.start})", f"{fname}:{line}",
                          "save the file as UTF-8") from None
    root = os.path.dirname(path)
    top_y = parse_yaml(text, fname)
    if top_y.kind == "map":             # `x-NAME:` top-level keys hold anchors for merge keys
        top_y.value = {k: v for k, v in top_y.value.items() if not k.startswith("x-")}
    locs = {}
    top = check_section((), TOP, top_y, locs)
    project = Project(path=path, root=root)
    project.cache = check_section(("cache",), CACHE, top["cache"] or None, project.cache_locs)
    targets_y = top_y.value["targets"][1]
    if not top["targets"]:
        raise ConfigError("no targets declared", targets_y.loc, "add one under 'targets:'")
    for name, (kloc, ty) in targets_y.value.items():
        if not TARGET_NAME.match(name):
            raise ConfigError(f"invalid target name '{name}'", kloc,
                              "use letters, digits, '_', '.' and '-'")
        tlocs = {("targets", name, "@key"): kloc}
        cfg = check_target(name, ty, root, tlocs)
        short = {k[2:]: v for k, v in tlocs.items()}
        short[()] = kloc
        target = Target(name=name, config=cfg, locs=short, root=root)
        for _role, kpath, rel, _fn in target.user_refs():
            if not os.path.isfile(os.path.join(root, rel)):
                raise ConfigError(f"user file '{rel}' not found", target.loc(*kpath),
                                  _close_file(root, rel))
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
    from s2build.project import rules                   # commands that generate data
    rules.parse(project, top_y.value.get("rules", (None, None))[1], top["allow_outside_sources"])
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
    everything but NOT_IN_KEY, `holdout` without its glob patterns, `train.torchrun` reduced
    to `nnodes` (with train.nproc, the world size; where the ranks meet cannot change the
    bytes), and `metrics` reduced to the user-code metrics (`file.py:function`, in order: the
    artifact records each of them, besides every built-in metric of the task)."""
    out = {k: v for k, v in target.config.items() if k not in NOT_IN_KEY}
    if isinstance(out.get("train"), dict) and isinstance(out["train"].get("torchrun"), dict):
        out["train"] = dict(out["train"], torchrun={"nnodes": out["train"]["torchrun"]["nnodes"]})
    if isinstance(out.get("holdout"), dict):
        out["holdout"] = {k: v for k, v in out["holdout"].items() if k != "sources"}
    if isinstance(out.get("upstream"), dict):       # the name is replaced by the artifact's
        out["upstream"] = {k: v for k, v in out["upstream"].items() if k != "target"}  # digest
    if isinstance(out.get("metrics"), list):
        out["metrics"] = [m for m in out["metrics"]
                          if isinstance(m, dict) or USER_REF.match(m or "")]
    return out

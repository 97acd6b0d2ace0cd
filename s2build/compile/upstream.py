"""A target that reads another target's artifact (`upstream: {target, use, output, ...}`).

The upstream's ONNX file runs through onnxruntime, as any consumer would, over this target's
rows; its outputs are cached per (graph digest, output, loader config, source file digest,
onnxruntime version) in `.s2build/upstream/KEY.npy` (tmp + os.replace), so an edit to one
file runs the upstream over that file's rows only. `prepare(target, ds, project, inputs)` returns a Chain:

    features     ds.x becomes the upstream's output `output` (default `embedding`, float32
                 [n, k]): this network trains on it, and `compose(network)` puts the upstream
                 graph in front of the exported network, so the artifact takes the upstream's
                 inputs (raw columns or the image tensor) and ships as one file. Its metadata
                 describes those inputs (copied from the upstream's).
    soft_labels  ds.soft holds the upstream's logits (float32 [n, classes]), which the loss
                 distils at `temperature` (compile/distill.py); the artifact stands alone.

What the downstream key holds of its upstream (`config.upstream.artifact`) is the upstream's
`graph_digest`: the SHA-256 of the artifact with its metadata cleared, and of the metadata that
describes its inputs (INPUT_FACTS). Every provenance field, the build key included, is left
out, so an upstream rebuild that computes the same function (a new s2build version, a
`train.memory` budget the data fits in, a user metric added) leaves the downstream current:
early cutoff. The upstream artifact is read from its output file and must have the digest the
key holds, else the build stops: the key never lies.
"""

import hashlib
import io
import json
import os

import numpy as np

from s2build import atomic
from s2build.errors import BuildError

CHUNK = 8192                       # rows per onnxruntime run
PREFIX = "upstream/"               # every name of the upstream graph in a composed artifact
INPUT_FACTS = ("s2build.features", "s2build.columns", "s2build.input_shape", "s2build.prep")


class Chain:
    """What a downstream build knows of its upstream: `use`, `output`, the artifact bytes
    `data` and its `digest`, `meta` (its s2build metadata), and `feeds(rows)`: the upstream's
    inputs for rows of the dataset (the verification of a composed artifact)."""

    def __init__(self, target, use, output, data, digest, meta, feeds):
        self.target, self.use, self.output = target, use, output
        self.data, self.digest, self.meta, self.feeds = data, digest, meta, feeds

    def facts(self):
        """Metadata the downstream artifact carries about its upstream (and, composed, the
        inputs it takes: the upstream's)."""
        out = {"s2build.upstream": json.dumps({"use": self.use, "output": self.output,
                                               "artifact": self.digest}, sort_keys=True,
                                              separators=(",", ":"))}
        if self.use == "features":
            out.update({k: self.meta[k] for k in INPUT_FACTS if k in self.meta})
        return out

    def compose(self, network):
        """ONNX bytes: the upstream graph, its output `output` feeding `network`'s input."""
        from s2build.compile import compose
        return compose.chain(self.data, self.output, network)


def graph_digest(data):
    """The upstream digest of ONNX bytes `data` (see the module): SHA-256 hex."""
    from s2build.compile.artifact import graph_digest as digest
    return digest(data, INPUT_FACTS)


def read_artifact(project, target, inputs):
    """(bytes, digest) of the upstream artifact the key names; BuildError when the file is
    missing or holds other bytes than the key says (rebuilt or edited meanwhile)."""
    name = target.config["upstream"]["target"]
    want = inputs.config["upstream"]["artifact"]
    path = project.targets[name].output
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BuildError(f"upstream artifact {path}: {e.strerror}", target.loc("upstream"),
                         f"build '{name}' first") from None
    digest = graph_digest(data)
    if digest != want:
        raise BuildError(f"upstream artifact {project.targets[name].config['output']} changed "
                         "since this build was planned", target.loc("upstream"),
                         "run the build again")
    return data, digest


def prepare(target, ds, project, inputs):
    """Run the upstream over `ds` as `target.upstream` says; see the module. Returns a Chain."""
    from s2build.compile.artifact import Artifact
    cfg = target.config["upstream"]
    data, digest = read_artifact(project, target, inputs)
    art = Artifact(data=data)
    meta, graph_inputs, outputs = art.meta, art.inputs, art.output_names
    use = cfg["use"]
    output = cfg["output"] or ("logits" if use == "soft_labels" else "embedding")
    if output not in outputs:
        hint = "set export.embedding: true on the upstream target" if output == "embedding" \
            else "one of: " + ", ".join(outputs)
        raise BuildError(f"upstream '{cfg['target']}' has no output '{output}' (its outputs: "
                         f"{', '.join(outputs)})", target.loc("upstream"), hint)
    feeds = _feeder(target, ds, graph_inputs)
    values = _run_cached(target, ds, inputs, digest, output, art.session, feeds,
                         project.state_dir)
    chain = Chain(cfg["target"], use, output, data, digest, meta, feeds)
    if use == "features":
        ds.x = values.reshape(len(values), -1)
        ds.features = [f"{cfg['target']}.{output}[{j}]" for j in range(ds.x.shape[1])]
    else:
        up_classes = json.loads(meta.get("s2build.classes", "[]"))
        if [str(c) for c in up_classes] != [str(c) for c in ds.classes]:
            raise BuildError(f"upstream '{cfg['target']}' has classes {up_classes}, this target "
                             f"{ds.classes}: soft labels need the same classes in the same "
                             "order", target.loc("upstream"), "set loader.classes on both")
        ds.soft = values.astype(np.float32, copy=False)
    return chain


def _feeder(target, ds, graph_inputs):
    """rows -> {input name: array} of the upstream's inputs, from this dataset's rows."""
    names = [n for n, _t, _s in graph_inputs]
    if ds.prep is not None:                        # a table: raw columns, as predict feeds
        missing = [n for n in names if n not in ds.prep.names]
        if missing:
            raise BuildError(f"the upstream artifact takes column '{missing[0]}', which this "
                             "target's rows do not have", target.loc("upstream"),
                             "read the same columns as the upstream target")
        raw, prep = ds.raw, ds.prep
        return lambda rows: {k: v for k, v in prep.feeds(raw, rows).items() if k in names}
    if len(names) != 1:
        raise BuildError(f"the upstream artifact takes {len(names)} inputs ({', '.join(names)}); "
                         "this target's rows are one tensor", target.loc("upstream"))
    x, name = ds.x, names[0]
    shape = list(graph_inputs[0][2][1:])
    if all(isinstance(d, int) for d in shape) and shape != list(x.shape[1:]):
        raise BuildError(f"the upstream artifact takes rows shaped {shape}, this target's rows "
                         f"are {list(x.shape[1:])}", target.loc("upstream"),
                         "use the same loader settings as the upstream target")
    return lambda rows: {name: np.ascontiguousarray(x[rows])}


def _run_cached(target, ds, inputs, digest, output, session, feeds, state_dir):
    """The upstream's `output` for every row of `ds`, float32 [n, ...], file by file through
    the cache (see the module; onnxruntime's version is in each entry's key too)."""
    import onnxruntime as ort
    files, index = ds.origins.files, ds.origins.file_index
    digests = dict(inputs.sources, **inputs.holdout)
    loader = json.dumps(inputs.config.get("loader"), sort_keys=True, default=str)
    folder = os.path.join(state_dir, "upstream")
    parts = []
    bounds = np.flatnonzero(np.diff(index)) + 1 if len(index) else np.zeros(0, np.int64)
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(index)]):
        rel = files[int(index[lo])]
        key = hashlib.sha256("\0".join([digest, output, loader, digests.get(rel, rel),
                                        str(hi - lo), ort.__version__]).encode()).hexdigest()
        path = os.path.join(folder, key[:2], key + ".npy")
        got = None
        if os.path.isfile(path):
            try:
                got = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                got = None                         # damaged: run again, then replace it
            if got is not None and len(got) != hi - lo:
                got = None
            if got is not None:
                try:
                    os.utime(path)                 # a use: gc removes the least recently used
                except OSError:
                    pass
        if got is None:
            rows = np.arange(lo, hi)
            got = np.concatenate([session.run([output], feeds(rows[i:i + CHUNK]))[0]
                                  for i in range(0, len(rows), CHUNK)]).astype(np.float32)
            buf = io.BytesIO()
            np.save(buf, got, allow_pickle=False)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic.write_bytes(path, buf.getvalue(), durable=False)
        parts.append(got)
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)

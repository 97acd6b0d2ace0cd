"""A built ONNX artifact, opened once: its s2build metadata, its inputs and outputs, and an
onnxruntime session made when first needed.

`Artifact(path)` (or `Artifact(data=bytes)`) reads the file once. The metadata, the graph's
inputs (name, element type and shape) and its output names are read from the protobuf directly
by a small wire-format reader (standard library; no `import onnx`, which costs seconds): a
ModelProto's field 14 holds `metadata_props` (key 1, value 2), field 7 the graph, whose fields
11 and 12 are its inputs and outputs (ValueInfoProto: name 1, type 2 -> tensor_type 1 ->
elem_type 1, shape 2 -> dim 1 -> dim_value 1 | dim_param 2) and field 5 its initializers (name
8, not inputs). A file that is not a readable ONNX model raises ArtifactError.

Two kinds of artifact: one float input [batch, ...] (images, arrays, and tables before issue
11), run with `run(x)`; or one input per raw table column (compile/prepgraph.py: float [batch]
per number column, string [batch] per category column), run with `run_feeds(feeds)`.

The metadata keys s2build writes (engine/runner.py `provenance`) are strings; `json(key)` parses
the JSON ones (features, classes, metrics, input_shape, loader, ...). `outputs(x)` is the first
output (logits or values) over rows `x`, `run(x)` every output, both in chunks of CHUNK rows
on one onnxruntime thread; `run_feeds` / `outputs_feeds` the same over {input name: array [n]}.
"""

import json

CHUNK = 4096
# TensorProto.DataType -> the name `inputs` reports ("float" and "string" are the table kinds)
ELEM_TYPES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32",
              7: "int64", 8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32",
              13: "uint64", 16: "bfloat16"}


class ArtifactError(ValueError):
    """The file is not an ONNX model this reader understands (damaged or truncated)."""


# --- protobuf wire format (only what the fields above need) --------------------------------

def _varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ArtifactError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 70:
            raise ArtifactError("bad varint")


def _fields(buf):
    """Yield (field number, wire type, value): an int for varints and fixed-width fields, a
    memoryview for length-delimited ones."""
    i, n = 0, len(buf)
    while i < n:
        tag, i = _varint(buf, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1 or wire == 5:
            width = 8 if wire == 1 else 4
            if i + width > n:
                raise ArtifactError("truncated field")
            value, i = int.from_bytes(buf[i:i + width], "little"), i + width
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ArtifactError("truncated field")
            value, i = buf[i:i + size], i + size
        else:
            raise ArtifactError(f"unsupported wire type {wire}")
        yield field, wire, value


def _text(v):
    try:
        return bytes(v).decode("utf-8")
    except UnicodeDecodeError:
        raise ArtifactError("a string field is not UTF-8") from None


def _value_info(buf):
    """(name, shape, elem type) of a ValueInfoProto; shape dims are ints, names (str) or None;
    the elem type a name of ELEM_TYPES (None when absent, "type<N>" when unknown)."""
    name, shape, elem = "", None, None
    for f, w, v in _fields(buf):
        if f == 1 and w == 2:
            name = _text(v)
        elif f == 2 and w == 2:                       # TypeProto
            for f2, w2, v2 in _fields(v):
                if f2 == 1 and w2 == 2:               # tensor_type
                    for f3, w3, v3 in _fields(v2):
                        if f3 == 1 and w3 == 0:       # elem_type
                            elem = ELEM_TYPES.get(v3, f"type{v3}")
                        elif f3 == 2 and w3 == 2:     # shape
                            shape = []
                            for f4, w4, v4 in _fields(v3):
                                if f4 == 1 and w4 == 2:
                                    dim = None
                                    for f5, w5, v5 in _fields(v4):
                                        if f5 == 1 and w5 == 0:
                                            dim = v5
                                        elif f5 == 2 and w5 == 2:
                                            dim = _text(v5)
                                    shape.append(dim)
    return name, shape, elem


def read_model_inputs(data):
    """(metadata, inputs [(name, elem type, shape)], output names) of ONNX bytes `data`."""
    buf = memoryview(data)
    meta, inputs, outputs, initializers, seen_graph = {}, [], [], set(), False
    for field, wire, value in _fields(buf):
        if field == 14 and wire == 2:
            key = val = ""
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    key = _text(v)
                elif f == 2 and w == 2:
                    val = _text(v)
            meta[key] = val
        elif field == 7 and wire == 2:
            seen_graph = True
            for f, w, v in _fields(value):
                if f == 11 and w == 2:
                    inputs.append(_value_info(v))
                elif f == 12 and w == 2:
                    outputs.append(_value_info(v)[0])
                elif f == 5 and w == 2:
                    for f2, w2, v2 in _fields(v):
                        if f2 == 8 and w2 == 2:
                            initializers.add(_text(v2))
    if not seen_graph:
        raise ArtifactError("no graph in the file")
    return meta, [(name, elem, shape) for name, shape, elem in inputs
                  if name not in initializers], outputs


# --- the artifact --------------------------------------------------------------------------

class Artifact:
    """An ONNX file s2build built. `meta` is its metadata (str -> str); `features`, `classes`,
    `task`, `build_key`, `metrics` come from it; `inputs` [(name, elem type, shape)] every graph
    input, `input_name` and `input_shape` the first one's (with the batch dimension, e.g.
    ['batch', 13]) and `output_names` from the graph; `row_shape` is one row's shape without
    the batch (the metadata's input_shape, e.g. [1, 8, 8])."""

    def __init__(self, path=None, data=None):
        if data is None:
            with open(path, "rb") as f:
                data = f.read()
        self.path, self.data = path, data
        self.meta, inputs, self.output_names = read_model_inputs(data)
        if not inputs:
            raise ArtifactError("the graph has no input")
        self.inputs = [(name, elem, shape or []) for name, elem, shape in inputs]
        self.input_name, _elem, self.input_shape = self.inputs[0]
        self.features = self.json("s2build.features", [])
        self.classes = self.json("s2build.classes", [])
        self.task = self.meta.get("s2build.task", "classification")
        self.build_key = self.meta.get("s2build.build_key")
        self._session = self._prep = None

    def json(self, key, default=None):
        """The metadata value at `key` parsed as JSON; `default` when absent or not JSON."""
        text = self.meta.get(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError:
            return default

    @property
    def metrics(self):
        return self.json("s2build.metrics", {})

    @property
    def row_shape(self):
        shape = self.json("s2build.input_shape")
        return list(shape) if shape is not None else list(self.input_shape[1:])

    @property
    def session(self):
        """The onnxruntime session (one thread, CPU, errors only), made on first use."""
        if self._session is None:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(self.data, opts,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def _shape(self, x):
        tail = self.input_shape[1:]
        if all(isinstance(d, int) for d in tail) and x.ndim == 2 and len(tail) != 1:
            return x.reshape((len(x), *tail))        # flat rows -> the graph's [n, C, H, W]
        return x

    @property
    def prep(self):
        """The table preprocessing in the graph (data/columns.TablePrep, from the metadata's
        s2build.prep), or None for an artifact that takes one array; ArtifactError when that
        metadata is damaged."""
        if "s2build.prep" not in self.meta:
            return None
        if self._prep is None:
            from s2build.data.columns import TablePrep
            try:
                self._prep = TablePrep.from_json(self.json("s2build.prep"))
            except ValueError as e:
                raise ArtifactError(f"s2build.prep metadata: {e}") from None
        return self._prep

    def run(self, x):
        """Every output over `x`, computed in chunks: [array, ...]. `x` is rows (float32
        [n, ...]), or for an artifact that takes raw columns, feeds {input name: array [n]},
        a RawTable (data/table; its columns by name, fed through `prep.feeds`) or, when every
        column is a number, one array [n, columns] in the artifact's input order."""
        import numpy as np
        if isinstance(x, dict):
            return self.run_feeds(x)
        if hasattr(x, "kinds"):
            if self.prep is None:
                raise ValueError("this artifact takes one array, not table columns")
            return self.run_feeds(self.prep.feeds(x))
        if self.takes_columns and self.meta.get("s2build.prep"):
            # number-only table columns given as one array [n, columns], in the artifact's order
            x = np.asarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != len(self.inputs) or \
                    any(kind != "float" for _n, kind, _s in self.inputs):
                raise ValueError(f"this artifact takes {len(self.inputs)} named columns; give "
                                 "them as feeds or a RawTable")
            return self.run_feeds({name: x[:, j] for j, (name, _k, _s) in enumerate(self.inputs)})
        x = np.ascontiguousarray(x, dtype=np.float32)
        chunks = [self.session.run(None, {self.input_name: self._shape(x[i:i + CHUNK])})
                  for i in range(0, len(x), CHUNK)]
        if not chunks:
            return [np.zeros((0,), np.float32) for _ in self.output_names]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]

    def outputs(self, x):
        """The first output (logits or values), float32 [n, ...], over `x` as `run` takes it."""
        return self.run(x)[0]

    @property
    def takes_columns(self):
        """True when the graph takes raw table columns (several inputs or 1-d ones)."""
        return len(self.inputs) > 1 or len(self.inputs[0][2]) == 1

    def run_feeds(self, feeds):
        """Every output over `feeds` {input name: array [n]} (all graph inputs, same n; float
        inputs become float32, string ones object arrays of str), in chunks: [array, ...]."""
        import numpy as np
        names = [name for name, _e, _s in self.inputs]
        if sorted(feeds) != sorted(names):
            raise ValueError(f"feeds name {sorted(feeds)}, the artifact takes {names}")
        arrays = {}
        for name, elem, _shape in self.inputs:
            v = feeds[name]
            arrays[name] = (np.asarray(v, dtype=object) if elem == "string"
                            else np.ascontiguousarray(v, dtype=np.float32) if elem == "float"
                            else np.asarray(v))
        n = {len(v) for v in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"feeds have different lengths {sorted(n)}")
        n = n.pop()
        chunks = [self.session.run(None, {k: v[i:i + CHUNK] for k, v in arrays.items()})
                  for i in range(0, n, CHUNK)]
        if not chunks:
            return [np.zeros((0,), np.float32) for _ in self.output_names]
        return [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]

    def outputs_feeds(self, feeds):
        """The first output over `feeds` (see run_feeds), float32 [n, ...]."""
        return self.run_feeds(feeds)[0]

    def class_index(self, label):
        """Index of class `label` (str or int; '1.0' matches class '1'), or None."""
        label = str(label)
        if label in self.classes:
            return self.classes.index(label)
        try:
            v = float(label)
        except ValueError:
            return None
        if v.is_integer() and str(int(v)) in self.classes:
            return self.classes.index(str(int(v)))
        return None


def graph_digest(data, kept=()):
    """SHA-256 hex of ONNX bytes `data` with its metadata cleared, and of the metadata values
    whose keys are in `kept` (what a downstream target's key holds: compile/upstream.py)."""
    import hashlib
    import onnx
    model = onnx.load_model_from_string(data)
    facts = {p.key: p.value for p in model.metadata_props if p.key in kept}
    del model.metadata_props[:]
    h = hashlib.sha256(model.SerializeToString(deterministic=True))
    h.update(json.dumps(facts, sort_keys=True).encode())
    return h.hexdigest()


def metadata(path):
    """The metadata of the ONNX file at `path`, or None when it cannot be read."""
    try:
        return Artifact(path).meta
    except (OSError, ArtifactError):
        return None

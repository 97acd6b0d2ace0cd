"""Export once per architecture, relink the weights after: the graph cache.

Two builds of the same architecture, input signature, exporter and toolchain export the same
ONNX graph with different initializers. `export_onnx(...)` takes export.export_onnx's arguments
plus `graphs_dir` and returns (bytes, note): the bytes are BYTE-IDENTICAL to what
export.export_onnx returns for the same module and metadata; `note` says in words what happened
(the runner shows it under -v): "graph relinked (KEY)", "graph exported: cached for
relinking (KEY)", "graph exported: not relinkable: WHY", "graph exported: not cacheable: WHY",
"graph exported: the weights have special values (WHY)"; a damaged entry adds "graph cache
entry WHY; ". `COUNTS` counts outcomes in this process: "exported" (fresh exports of the
build's weights), "learned" (exports of perturbed copies), "relinked".

The graph key: see graphkey.py (architecture, input signature, exporter, opset, toolchain).
Metadata is not in the key: model-level metadata_props are set after export
(export._set_metadata), exactly as export.export_onnx sets them.

Learning an architecture (a miss): export the real weights W (the artifact), then export a
copy whose floating-point tensors hold random values W' (seeded; a user model also -W', so a
branch on a weight's sign shows). Each initializer of the W' export is classified:
  * a link: its bytes equal a perturbed tensor's, or (2-D) its transpose's, as the legacy
    exporter folds a bias-free Linear (dtype and dims too; raw_data);
  * a constant: the same bytes in the W and W' exports (reshape shapes, scalars of the code);
  * anything else is computed from the weights (folded): not relinkable.
Then the graph is stored with the linked data cleared (the skeleton), and checked by the very
code path of a hit: relinking W must reproduce the W export byte for byte, and relinking W'
(and -W') the perturbed exports. Any difference (the graph depends on the weight values, data
kept outside raw_data, a sparse initializer) marks the architecture not relinkable; that too
is stored, so the check is not paid again. The stored graph is the generic one (random weights).

Special values: the exporters simplify on some weight values: both merge initializers with equal
values, and the dynamo optimizer drops x*1, x+0, x-0, x/1 and all-zero biases. So weights with
a linked tensor equal to another or to a constant initializer, all 0, all 1, all -1 or not
finite are never relinked (a fresh export instead; when they are the learning build's, nothing
is stored and the next build learns). This list is the one place that knows the exporters'
value-dependent rewrites; the key holds their versions, so a new version is learned afresh.

On disk: `<graphs_dir>/<key>.graph` (graphs_dir: the user's shared folder, see shared_dir, or
the project's `.s2build/graphs/`), written atomically (atomic.write_bytes):
    line 1  b"s2build-graph 1\\n"
    line 2  one line of JSON: {"key": hex, "relinkable": bool, "reason": str,
            "toolchain": {...}, "links": [[initializer index, initializer name, tensor name,
            onnx data_type, dims, "copy" | "transpose"], ...], "skeleton_sha256": hex,
            "skeleton_bytes": int}
    rest    the skeleton: the ModelProto (export-stripped, no metadata_props) whose linked
            initializers have empty raw_data; empty when not relinkable.
A file that is short, damaged, of another version or key, or whose skeleton does not hash to
its header is a miss: exported and learned again (the file is replaced), never an error.
`stale(graphs_dir)` names the entries gc (store/gc.py) removes: damaged ones and those of
another toolchain (they can never be hit again). `s2build clean --cache` removes the project's
folder; the shared one is the user's (`rm -rf ~/.cache/s2build/graphs`).

Only the standard library at import; torch and onnx are imported by the functions that use them.
"""

import contextlib
import hashlib
import json
import os
import time
from collections import Counter

from s2build import atomic
from s2build.compile import export as export_mod
from s2build.compile import graphkey
from s2build.compile.graphkey import Uncacheable, tensor_bytes as _tensor_bytes, \
    tensors as _tensors
from s2build.engine import toolchain as toolchain_mod

FORMAT = 1
MAGIC = b"s2build-graph %d\n" % FORMAT
FOLDER = "graphs"
SUFFIX = ".graph"
SEED = 20261206
COUNTS = Counter()          # "exported", "relinked", "learned" (perturbed exports), this process
ENV = "S2BUILD_GRAPH_CACHE"
SHARED_STALE_DAYS = 14      # gc keeps another toolchain's shared entries this long after use


def shared_dir():
    """The graph cache shared by this user's projects (entries are keyed by architecture and
    toolchain and hold no weights or data), or None: $S2BUILD_GRAPH_CACHE (`project`: None),
    else ($XDG_CACHE_HOME or ~/.cache)/s2build/graphs."""
    where = os.environ.get(ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "s2build", FOLDER)
    return None if where == "project" else os.path.abspath(where)


def graphs_dir(state_dir):
    """This build's graph cache: shared_dir(), or the project's .s2build/graphs/ when there is
    none or it cannot be written (a read-only home: later exports, never an error)."""
    where = shared_dir()
    try:
        if where is not None and (os.makedirs(where, exist_ok=True) or os.access(where, os.W_OK)):
            return where
    except OSError:
        pass
    return os.path.join(state_dir, FOLDER)


# --- Entries on disk -----------------------------------------------------------------------

class Entry:
    """One graph cache entry: relinkable (links, skeleton bytes) or not (reason)."""

    def __init__(self, key, relinkable, reason="", links=(), skeleton=b"", toolchain=None):
        self.key, self.relinkable, self.reason = key, relinkable, reason
        self.links, self.skeleton = [list(x) for x in links], skeleton
        self.toolchain = toolchain if toolchain is not None else toolchain_mod.toolchain("cpu", 1)

    def to_bytes(self):
        header = {"key": self.key, "relinkable": self.relinkable, "reason": self.reason,
                  "toolchain": self.toolchain, "links": self.links,
                  "skeleton_sha256": hashlib.sha256(self.skeleton).hexdigest(),
                  "skeleton_bytes": len(self.skeleton)}
        return MAGIC + json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + \
            b"\n" + self.skeleton


def parse_entry(data, key=None):
    """The Entry in `data` (a whole file), or (None, why) when it is not a sound entry."""
    if not data.startswith(MAGIC):
        return None, "not a graph cache file of this version"
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        return None, "truncated header"
    try:
        h = json.loads(data[len(MAGIC):end])
        skeleton = data[end + 1:]
        ok = isinstance(h, dict) and h.get("skeleton_bytes") == len(skeleton) \
            and h.get("skeleton_sha256") == hashlib.sha256(skeleton).hexdigest() \
            and isinstance(h.get("relinkable"), bool) and isinstance(h.get("links"), list) \
            and all(isinstance(x, list) and len(x) == 6 for x in h["links"]) \
            and isinstance(h.get("toolchain"), dict)
    except (ValueError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        return None, "damaged (header or checksum)"
    if key is not None and h.get("key") != key:
        return None, "written for another key"
    return Entry(h["key"], h["relinkable"], str(h.get("reason", "")), h["links"], skeleton,
                 h["toolchain"]), ""


def _path(folder, key):
    return os.path.join(folder, key + SUFFIX)


def _read(folder, key):
    """(Entry or None, why it is not usable: "" for a plain miss)."""
    try:
        with open(_path(folder, key), "rb") as f:
            data = f.read()
        with contextlib.suppress(OSError):
            os.utime(f.name)            # last use, for gc in a shared folder
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"unreadable ({e.strerror})"
    return parse_entry(data, key)


def _write(folder, entry):
    """Store `entry`; a failure to write costs only a later re-export."""
    try:
        atomic.write_bytes(_path(folder, entry.key), entry.to_bytes(), durable=False)
    except (OSError, atomic.WriteFailed):       # write_bytes says why; nothing needs it
        pass


def stale(folder, min_age_days=0):
    """[(path, bytes, why)] of entries in `folder` that can never be hit again: damaged ones,
    those of another toolchain (in a shared folder, `min_age_days`: only those unused that
    long, as another checkout may still use them), and leftover temporary files."""
    out = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    current = toolchain_mod.toolchain("cpu", 1)
    for name in names:
        p = os.path.join(folder, name)
        try:
            st = os.stat(p)
            size = st.st_size
            if name.startswith(atomic.TMP_PREFIX):
                out.append((p, size, "left by a killed process"))
                continue
            if not name.endswith(SUFFIX):
                continue
            with open(p, "rb") as f:
                entry, why = parse_entry(f.read(), name[: -len(SUFFIX)])
        except OSError:
            continue
        if entry is None:
            out.append((p, size, why))
        elif entry.toolchain != current:
            if (time.time() - st.st_mtime) / 86400 >= min_age_days:
                out.append((p, size, "another toolchain"))
    return out


# --- Relinking -----------------------------------------------------------------------------

def _onnx_type(dtype):
    import torch
    return {torch.float32: 1, torch.uint8: 2, torch.int8: 3, torch.int16: 5, torch.int32: 6,
            torch.int64: 7, torch.bool: 9, torch.float16: 10, torch.float64: 11,
            torch.bfloat16: 16}.get(dtype)


class Special(ValueError):
    """The weights have values an exporter simplifies on; the text names them."""


def _link_bytes(t, op):
    return _tensor_bytes(t.t() if op == "transpose" else t)


def _special(linked, constants):
    """Why a fresh export of these weights may take a simpler graph than the generic one the
    entry holds, or "": both exporters merge initializers with equal values (dtype, dims,
    bytes), and the dynamo optimizer drops x*1, x+0, x-0, x/1 and all-zero biases. `linked`:
    [(tensor name, tensor, data_type, dims, bytes)]; `constants`: {(data_type, dims, bytes)}."""
    import torch
    seen = {}
    for name, t, data_type, dims, data in linked:
        sig = (data_type, tuple(dims), data)
        other = seen.setdefault(sig, (name, id(t)))
        if other[1] != id(t) or sig in constants:
            return f"{name} equals {other[0] if other[1] != id(t) else 'a constant'}"
        flat = t.detach().reshape(-1)
        if not flat.numel():
            continue
        if not bool(torch.isfinite(flat.double()).all()):
            return f"{name} is not finite"
        first = float(flat[0])
        if first in (0.0, 1.0, -1.0) and bool((flat == flat[0]).all()):
            return f"{name} is all {first:g}"
    return ""


def _relink(entry, tensors, metadata):
    """The artifact bytes of `entry`'s skeleton with `tensors` ({name: tensor}) linked in and
    `metadata` set as export.export_onnx sets it; ValueError when they do not fit, Special
    when their values may make a fresh export simplify the graph."""
    import onnx
    model = onnx.load_model_from_string(entry.skeleton)
    inits = model.graph.initializer
    linked, filled = [], set()
    for index, init_name, tensor_name, data_type, dims, op in entry.links:
        if not (0 <= index < len(inits)) or inits[index].name != init_name:
            raise ValueError(f"skeleton has no initializer {init_name!r} at {index}")
        t = tensors.get(tensor_name)
        shape = list(t.shape)[::-1] if t is not None and op == "transpose" else \
            list(t.shape) if t is not None else None
        if t is None or op not in ("copy", "transpose") or (op == "transpose" and t.dim() != 2) \
                or _onnx_type(t.dtype) != data_type or shape != dims:
            raise ValueError(f"tensor {tensor_name!r} does not fit initializer {init_name!r}")
        inits[index].raw_data = data = _link_bytes(t, op)
        linked.append((tensor_name, t, data_type, dims, data))
        filled.add(index)
    constants = {(i.data_type, tuple(i.dims), i.raw_data) for n, i in enumerate(inits)
                 if n not in filled}
    why = _special(linked, constants)
    if why:
        raise Special(why)
    export_mod._strip(model)
    export_mod._set_metadata(model, metadata)
    return model.SerializeToString(deterministic=True)


def _perturbed(module, sign):
    """A copy of `module` whose floating-point tensors hold seeded random values (times `sign`)."""
    import copy
    import torch
    twin = copy.deepcopy(module)
    gen = torch.Generator().manual_seed(SEED)
    seen = set()
    with torch.no_grad():
        for _name, t in sorted(_tensors(twin).items()):
            if t.is_floating_point() and id(t) not in seen:
                seen.add(id(t))
                r = torch.randn(t.shape, generator=gen, dtype=torch.float64) * sign
                t.copy_(r.to(t.dtype))
    return twin


def _learn(key, module, example, fresh, *, output_names, metadata, exporter, opset, user):
    """The Entry for `module`'s graph, given `fresh` (export.export_onnx of its weights)."""
    import onnx
    signs = (1.0, -1.0) if user else (1.0,)
    probes = []
    for sign in signs:
        try:
            twin = _perturbed(module, sign)
        except Exception as e:             # a user module that cannot be copied
            return Entry(key, False, f"cannot copy the module ({type(e).__name__}: {e})")
        try:
            data = export_mod.export_onnx(twin, example, output_names=output_names, metadata={},
                                          exporter=exporter, opset=opset)
        except Exception as e:
            return Entry(key, False, f"export with other weights failed ({e})")
        COUNTS["learned"] += 1
        probes.append((twin, data))
    base = onnx.load_model_from_string(fresh)
    model = onnx.load_model_from_string(probes[0][1])
    if len(model.graph.sparse_initializer):
        return Entry(key, False, "sparse initializers")
    a_inits, p_inits = base.graph.initializer, model.graph.initializer
    by_bytes = {}                          # a copy of a perturbed tensor, or its transpose
    for name, t in _tensors(probes[0][0]).items():
        if t.is_floating_point():
            ops = ("copy", "transpose") if t.dim() == 2 else ("copy",)
            for op in ops:
                dims = tuple(t.shape)[::-1] if op == "transpose" else tuple(t.shape)
                by_bytes.setdefault((_link_bytes(t, op), _onnx_type(t.dtype), dims),
                                    []).append((name, op))
    links = []
    for index, p in enumerate(p_inits):
        found = by_bytes.get((p.raw_data, p.data_type, tuple(p.dims))) if p.raw_data else None
        if found:
            name, op = min(found, key=lambda f: (f[0] != p.name, f))
            links.append([index, p.name, name, p.data_type, list(p.dims), op])
    own = _tensors(module)                 # this build's weights may have simplified its graph
    linked = [(name, own[name], dt, dims, _link_bytes(own[name], op))
              for _i, _n, name, dt, dims, op in links if name in own]
    constants = {(p.data_type, tuple(p.dims), p.raw_data) for i, p in enumerate(p_inits)
                 if i not in {x[0] for x in links}}
    why = _special(linked, constants)
    if why:
        return Special(why)
    if [i.name for i in a_inits] != [i.name for i in p_inits]:
        return Entry(key, False, "the initializers depend on the weight values")
    for index, (a, p) in enumerate(zip(a_inits, p_inits)):
        if any(x[0] == index for x in links):
            p.raw_data = b""
        elif a.SerializeToString(deterministic=True) != p.SerializeToString(deterministic=True):
            return Entry(key, False, f"initializer {p.name} is computed from the weights "
                                     "(folded), not a copy or transpose of one tensor")
    export_mod._set_metadata(model, {})
    entry = Entry(key, True, links=links, skeleton=model.SerializeToString(deterministic=True))
    entry = parse_entry(entry.to_bytes(), key)[0]          # check what a hit will read
    checks = [(_tensors(module), metadata, fresh)] + \
        [(_tensors(twin), {}, data) for twin, data in probes]
    for n, (tensors, meta, want) in enumerate(checks):
        try:
            got = _relink(entry, tensors, meta)
        except Special as e:               # the weights of this build: learned next time
            if n == 0:
                return Special(str(e))
            return Entry(key, False, f"perturbed weights have special values ({e})")
        except Exception as e:             # onnx's DecodeError, ValueError
            return Entry(key, False, f"relinking failed ({e})")
        if got != want:
            return Entry(key, False, "relinking the weights does not reproduce a fresh export "
                                     "(the graph depends on the weight values)")
    return entry


def export_onnx(module, example_input, *, output_names, metadata, exporter="dynamo", opset=None,
                graphs_dir, extra_key=None):
    """export.export_onnx through the graph cache in `graphs_dir`: (the same bytes, note).
    Raises what export.export_onnx raises."""
    def fresh():
        COUNTS["exported"] += 1
        return export_mod.export_onnx(module, example_input, output_names=output_names,
                                      metadata=metadata, exporter=exporter, opset=opset)
    if exporter not in export_mod.EXPORTERS or not list(output_names) \
            or example_input.dim() < 1 or example_input.shape[0] < 2:
        return fresh(), "graph exported"                    # export_onnx says what is wrong
    try:
        key, user = graphkey.graph_key(module, example_input, output_names=output_names,
                              exporter=exporter, opset=opset, extra_key=extra_key)
    except Uncacheable as e:
        return fresh(), f"graph exported: not cacheable: {e}"
    entry, why = _read(graphs_dir, key)
    if entry is not None and not entry.relinkable:
        return fresh(), f"graph exported: not relinkable: {entry.reason}"
    if entry is not None:
        try:
            data = _relink(entry, _tensors(module), metadata)
            COUNTS["relinked"] += 1
            return data, f"graph relinked ({key[:12]})"
        except Special as e:
            return fresh(), f"graph exported: the weights have special values ({e})"
        except Exception as e:             # a skeleton that does not parse or fit: a miss
            why = f"does not fit ({e})"
    data = fresh()
    entry = _learn(key, module, example_input, data, output_names=output_names,
                   metadata=metadata, exporter=exporter, opset=opset, user=user)
    said = f"graph cache entry {why}; " if why else ""
    if isinstance(entry, Special):
        return data, f"graph exported: {said}not learned: the weights have special values " \
                     f"({entry})"
    _write(graphs_dir, entry)
    if not entry.relinkable:
        return data, f"graph exported: {said}not relinkable: {entry.reason}"
    return data, f"graph exported: {said}cached for relinking ({key[:12]})"

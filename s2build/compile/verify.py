"""Verify an exported ONNX model before it is recorded.

`verify_onnx` runs, in order:
  1. `onnx.checker.check_model(full_check=True)` (structure plus shape inference);
  2. parity: onnxruntime (CPUExecutionProvider, one intra-op thread, model loaded from bytes)
     against the torch module (CPU, no_grad) on a held-out batch; every output must satisfy
     `max|onnx - torch| <= 1e-4 * max(1, max|torch|)`.
It returns a `VerifyReport`, or raises VerificationError naming the check and the output.
`assert_no_leaks` checks that no text field of the model (metadata_props, doc strings, node,
value_info, input, output, initializer and function names, attribute strings, in subgraphs and
functions too) names a forbidden path (project root, home dir) as a whole path: `/app` is found in
`/app/data/a.csv` or `"/app"`, not in `data/apple/x.csv`; `/root` not in `data/roots.csv`.
torch, onnx and onnxruntime are imported lazily.
"""

import copy
import time
from dataclasses import dataclass

from s2build.errors import VerificationError

RELATIVE_TOLERANCE = 1e-4  # allowed max|diff| per unit of max(1, max|reference|)


@dataclass
class VerifyReport:
    max_abs_diff: float  # worst |onnx - torch| over all outputs
    tolerance: float  # the bound max_abs_diff was held to (the tightest over outputs)
    argmax_agreement: float | None  # share of rows whose first-output argmax matches; None if n/a
    n_rows: int  # rows in the verification batch
    seconds: float  # wall time of the whole verification


def verify_onnx(onnx_bytes, module, inputs, feeds=None):
    """Check `onnx_bytes` and compare it with `module` on `inputs` (float32 tensor [n, ...]).

    The model's single input is fed `inputs`, or, for a model that takes raw columns, `feeds`
    ({input name: array}, the same rows before preprocessing); its outputs are compared, in order, with the
    module's output (a tensor or a tuple of tensors); a module on another device is compared
    through a CPU copy. Raises VerificationError on a checker failure, a torch or onnxruntime failure,
    an output count or shape mismatch, or a parity failure.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    start = time.perf_counter()
    try:
        model = onnx.load_model_from_string(onnx_bytes)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise VerificationError(f"ONNX checker: {_summary(exc)}") from exc

    x = inputs.detach().to("cpu", torch.float32)
    if any(t.device.type != "cpu" for t in (*module.parameters(), *module.buffers())):
        module = copy.deepcopy(module).to("cpu")  # never move the caller's module
    try:
        with torch.no_grad():
            ref = module(x)
    except Exception as exc:
        raise VerificationError(f"torch module failed on the verification batch: {_summary(exc)}") from exc
    refs = [t.detach().numpy() for t in (ref if isinstance(ref, (tuple, list)) else (ref,))]

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        if feeds is None:
            feeds = {session.get_inputs()[0].name: x.numpy()}
        outs = session.run(None, feeds)
    except Exception as exc:
        raise VerificationError(f"onnxruntime could not run the model: {_summary(exc)}") from exc
    names = [o.name for o in session.get_outputs()]
    if len(outs) != len(refs):
        raise VerificationError(
            f"ONNX model has {len(outs)} outputs {names}, torch module returns {len(refs)}")

    worst, tightest = 0.0, float("inf")
    for out_name, got, want in zip(names, outs, refs):
        if got.shape != want.shape:
            raise VerificationError(f"output {out_name!r}: shape {got.shape} in ONNX, {want.shape} in torch")
        diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
        bound = RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(want))) if want.size else 0.0)
        if not diff <= bound:  # also catches NaN
            raise VerificationError(
                f"output {out_name!r}: max|onnx - torch| = {diff:.3g} exceeds tolerance {bound:.3g}")
        worst, tightest = max(worst, diff), min(tightest, bound)

    agreement = None
    first_got, first_want = outs[0], refs[0]
    if first_want.ndim == 2 and first_want.shape[1] > 1 and first_want.shape[0] > 0:
        agreement = float(np.mean(first_got.argmax(axis=1) == first_want.argmax(axis=1)))
    return VerifyReport(max_abs_diff=worst, tolerance=tightest, argmax_agreement=agreement,
                        n_rows=int(x.shape[0]), seconds=time.perf_counter() - start)


_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def names_path(text, path):
    """True when `path` occurs in `text` as a whole path: not preceded by a path character
    (letter, digit, `_`, `.`, `-`) and followed by `/`, the end, or a non-path character."""
    start = text.find(path)
    while start >= 0:
        before = text[start - 1] if start else ""
        after = text[start + len(path)] if start + len(path) < len(text) else ""
        if before not in _PATH_CHARS and (after == "" or after not in _PATH_CHARS):
            return True
        start = text.find(path, start + 1)
    return False


def _strings(msg, where):
    """(where, text) of every text field of protobuf `msg`, recursively (tensor payloads and
    numbers skipped; bytes fields other than raw_data are decoded, e.g. string attributes)."""
    for field, value in msg.ListFields():
        here = f"{where}.{field.name}"
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == 3
        if field.type == field.TYPE_MESSAGE:
            items = value if repeated else [value]
            for i, item in enumerate(items):
                name = getattr(item, "name", "") or getattr(item, "key", "") or str(i)
                yield from _strings(item, f"{here}[{name}]")
        elif field.type in (field.TYPE_STRING, field.TYPE_BYTES) and field.name != "raw_data":
            for item in value if repeated else [value]:
                yield here, item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def assert_no_leaks(onnx_bytes, forbidden):
    """Raise VerificationError if a text field of the model names a path in `forbidden` (see
    `names_path`); empty entries and `/` are ignored."""
    import onnx
    paths = [p.rstrip("/") for p in forbidden if p and p.rstrip("/")]
    if not paths:
        return
    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as exc:
        raise VerificationError(f"ONNX file does not parse: {_summary(exc)}") from exc
    for where, text in _strings(model, "model"):
        for p in paths:
            if names_path(text, p):
                raise VerificationError(f"ONNX file leaks {p!r} in {where[:120]}",
                                        hint="exporter metadata was not stripped")


def _summary(exc, limit=300):
    """The exception's message on one line, at most `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

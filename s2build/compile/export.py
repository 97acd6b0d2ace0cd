"""Export a trained module to a self-contained, reproducible ONNX file.

Contract of the bytes `export_onnx` returns:
  * one ONNX ModelProto, all weights inline (no external data), one input named "input" and the
    outputs named as asked; axis 0 of the input and of every output is the symbolic dim "batch";
  * no absolute paths, process- or time-specific data: every `doc_string` and every
    `metadata_props` entry the exporter wrote (nodes, values, graphs, functions, model) is removed
    (the dynamo exporter puts `pkg.torch.onnx.stack_trace`, `class_hierarchy`, `fx_node`,
    `name_scopes` and `namespace` on each node; the first names site-packages and user files);
  * model-level `metadata_props` are exactly `metadata`, sorted by key;
  * therefore byte-identical for the same weights, torch/onnx versions and exporter, whatever the
    working directory or the path of the file that defines the module.

The exporter's console noise (progress prints, "torchvision is not installed" log lines,
FutureWarnings) is swallowed; logging and warning state are restored afterwards.
torch and onnx are imported lazily: importing this module costs only the standard library.
"""

import contextlib
import io
import logging
import warnings

from s2build.errors import BuildError

EXPORTERS = ("dynamo", "legacy")
BATCH_DIM = "batch"
INPUT_NAME = "input"


def export_onnx(module, example_input, *, output_names, metadata, exporter="dynamo", opset=None):
    """Export `module` (eval mode, one float32 input [batch, ...]) and return the ONNX bytes.

    `module` returns a tensor or a tuple of tensors, named by `output_names` in order.
    `example_input` must have batch >= 2 so the batch axis is not specialised to 1.
    `metadata` (str -> str) becomes the model's metadata_props, sorted by key.
    `exporter` is "dynamo" (torch.export based, default) or "legacy" (TorchScript, faster, deprecated).
    `opset` None lets the exporter choose its default.
    Raises BuildError when the exporter fails or its arguments are unusable.
    """
    if exporter not in EXPORTERS:
        raise BuildError(f"unknown exporter {exporter!r}", hint=f"use one of {', '.join(EXPORTERS)}")
    output_names = list(output_names)
    if not output_names:
        raise BuildError("export needs at least one output name")
    if example_input.dim() < 1 or example_input.shape[0] < 2:
        raise BuildError(f"example input for export needs batch >= 2, got shape {tuple(example_input.shape)}")
    try:
        with _quiet():
            if exporter == "dynamo":
                model = _export_dynamo(module, example_input, output_names, opset)
            else:
                model = _export_legacy(module, example_input, output_names, opset)
    except BuildError:
        raise
    except Exception as exc:  # the exporters raise anything from torch._dynamo to onnxscript errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BuildError(f"ONNX export ({exporter}) failed: {type(exc).__name__}: {first}",
                         hint="try the other exporter with --exporter") from exc
    got = [o.name for o in model.graph.output]
    if got != output_names:
        raise BuildError(f"exported model has outputs {got}, expected {output_names}",
                         hint="does the module return exactly one tensor per output name?")
    _strip(model)
    _set_metadata(model, metadata)
    return model.SerializeToString(deterministic=True)


def _export_dynamo(module, example_input, output_names, opset):
    """torch.export based exporter -> ModelProto (kept in memory, weights inline)."""
    import torch

    program = torch.onnx.export(
        module, (example_input,), None,
        input_names=[INPUT_NAME], output_names=output_names, opset_version=opset,
        dynamo=True, external_data=False, verbose=False, optimize=True,
        dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
    )
    return program.model_proto


def _export_legacy(module, example_input, output_names, opset):
    """TorchScript based exporter -> ModelProto; serialised into a BytesIO, never to disk."""
    import onnx
    import torch

    buf = io.BytesIO()
    axes = {name: {0: BATCH_DIM} for name in [INPUT_NAME, *output_names]}
    torch.onnx.export(
        module, (example_input,), buf,
        input_names=[INPUT_NAME], output_names=output_names, opset_version=opset,
        dynamo=False, dynamic_axes=axes, verbose=False, do_constant_folding=True,
    )
    return onnx.load_model_from_string(buf.getvalue())


@contextlib.contextmanager
def _quiet():
    """Swallow stdout/stderr prints, warnings and log records; restore all three afterwards."""
    previous_disable = logging.root.manager.disable
    sink = io.StringIO()
    try:
        logging.disable(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous_disable)


def _strip(model):
    """Remove doc_strings and metadata_props everywhere (they carry paths, stack traces, names)."""
    model.doc_string = ""
    del model.metadata_props[:]
    for function in model.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        for node in function.node:
            _strip_node(node)
    _strip_graph(model.graph)


def _strip_graph(graph):
    graph.doc_string = ""
    del graph.metadata_props[:]
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.doc_string = ""
        del value.metadata_props[:]
    for tensor in graph.initializer:
        tensor.doc_string = ""
        del tensor.metadata_props[:]
    for node in graph.node:
        _strip_node(node)


def _strip_node(node):
    node.doc_string = ""
    del node.metadata_props[:]
    for attr in node.attribute:
        attr.doc_string = ""
        if attr.HasField("g"):
            _strip_graph(attr.g)
        for sub in attr.graphs:
            _strip_graph(sub)


def _set_metadata(model, metadata):
    """Replace model-level metadata_props with `metadata`, sorted by key (str -> str)."""
    del model.metadata_props[:]
    for key in sorted(metadata):
        value = metadata[key]
        if not isinstance(key, str) or not isinstance(value, str):
            raise BuildError(f"ONNX metadata must map str to str, got {key!r}: {value!r}")
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value

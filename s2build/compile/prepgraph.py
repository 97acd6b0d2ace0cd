"""The table preprocessing as ONNX nodes, in front of the network: the artifact takes raw
columns and a consumer in any language needs no preprocessing code.

`prepend(prep, network, network_input="input") -> bytes` merges a fitted data/columns.TablePrep
and the network's ONNX bytes (one float input [batch, prep.width]) into one ModelProto:

  * inputs: one per feature column, named by the column, in `prep.names` order, shape [batch]
    (symbolic dim "batch"): float (NaN = missing) for a number column, string for a category
    column ("" or a NULL_TOKEN = missing; strings match exactly, nothing is stripped);
  * number columns: Unsqueeze + Concat -> x [batch, k]; IsNaN; Where(nan, mean, x); Sub mean;
    Div std (the same float32 operations, in the same order, as TablePrep.transform, so the
    features agree bit for bit); Cast(nan) -> float for the missing indicators;
  * category columns: ai.onnx.ml LabelEncoder (string -> slot: `CategoryPrep.keys()`, default
    the (other) slot), then OneHot over the column's slots;
  * Split of those [batch, k] results into columns, and one Concat of every column's features in
    `prep.feature_names` order, feeding the network where its input was;
  * the network's nodes, initializers, outputs, model metadata_props, ir_version and default
    opset are kept; ai.onnx.ml is added to the opset imports. Every new name starts "s2prep/";
    a network value named like a column is renamed "net/<name>"; a column named like a network
    output is a ValueError. No doc strings; serialised with deterministic=True, so the same prep
    and network bytes give the same bytes.

`prep_model(prep)` is the preprocessing alone (output FEATURES [batch, width]), for tests and
for checking parity of the features themselves. A column named "" or starting "s2prep/" is a
ValueError.
"""

PREFIX = "s2prep/"
FEATURES = PREFIX + "features"
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 3
MIN_OPSET = 13                     # Unsqueeze with axes as an input
BATCH_DIM = "batch"


def prepend(prep, network, network_input="input"):
    """ONNX bytes of `prep` in front of the network (ONNX bytes `network`); see the module."""
    import onnx

    model = onnx.load_model_from_string(network)
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    feeds = [i for i in graph.input if i.name not in inits]
    if [i.name for i in feeds] != [network_input]:
        raise ValueError(f"the network's inputs are {[i.name for i in feeds]}, "
                         f"expected one named {network_input!r}")
    dims = feeds[0].type.tensor_type.shape.dim
    if len(dims) != 2 or (dims[1].HasField("dim_value") and dims[1].dim_value != prep.width):
        got = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise ValueError(f"the network's input has shape {got}, the table gives "
                         f"[batch, {prep.width}]")
    opset = _opset(model, "")
    if opset < MIN_OPSET:
        raise ValueError(f"the network uses opset {opset}; table inputs need >= {MIN_OPSET}")
    names = _names(graph)
    clash = sorted(n for n in names if n.startswith(PREFIX))
    if clash:
        raise ValueError(f"the network already has a value named {clash[0]!r}")
    outputs = [o.name for o in graph.output]
    bad = [c for c in prep.names if c in outputs]
    if bad:
        raise ValueError(f"column {bad[0]!r} has the name of a model output "
                         f"({', '.join(outputs)}): rename the column")
    rename = {network_input: FEATURES}
    for c in prep.names:
        if c in names and c != network_input:
            new = "net/" + c
            while new in names:
                new = "net/" + new
            rename[c] = new
    _rename(graph, rename)

    nodes, initializers, inputs = _prep_graph(prep, FEATURES)
    kept_inputs = [i for i in graph.input if i.name != FEATURES]
    del graph.input[:]
    graph.input.extend(inputs + kept_inputs)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.extend(initializers)
    ml = _opset(model, ML_DOMAIN)
    if ml == 0:
        model.opset_import.append(onnx.helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    elif ml < 2:
        raise ValueError(f"the network imports {ML_DOMAIN} opset {ml}; LabelEncoder needs >= 2")
    return model.SerializeToString(deterministic=True)


def prep_model(prep, opset=17):
    """ONNX bytes of the preprocessing alone: raw inputs -> FEATURES float [batch, width]."""
    import onnx
    from onnx import helper

    nodes, initializers, inputs = _prep_graph(prep, FEATURES)
    out = helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT,
                                        [BATCH_DIM, prep.width])
    graph = helper.make_graph(nodes, "tableprep", inputs, [out], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
                              producer_name="s2build")
    model.ir_version = 8
    return model.SerializeToString(deterministic=True)


# --- the preprocessing nodes ---------------------------------------------------------------

def _prep_graph(prep, output):
    """(nodes, initializers, inputs) computing float [batch, width] `output` from raw inputs."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    bad = [c for c in prep.names if not c or c.startswith(PREFIX)]
    if bad:
        raise ValueError(f"column name {bad[0]!r} cannot name a graph input "
                         f"(empty, or starting {PREFIX!r}): rename the column")
    nodes, inits = [], []

    def node(op, ins, out, domain="", **attrs):
        outs = out if isinstance(out, list) else [out]
        nodes.append(helper.make_node(op, ins, outs, name=f"{PREFIX}{op}_{len(nodes)}",
                                      domain=domain, **attrs))
        return out

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), PREFIX + name))
        return PREFIX + name

    def columns_of(x, k, name):
        """The k columns of x [batch, k], each [batch, 1] (Split, not a Gather: cheaper)."""
        if k == 1:
            return [x]
        return node("Split", [x, const(name + "_split", np.ones(k, dtype=np.int64))],
                    [f"{PREFIX}{name}{i}" for i in range(k)], axis=1)

    inputs = [helper.make_tensor_value_info(
        name, onnx.TensorProto.FLOAT if kind == "float" else onnx.TensorProto.STRING, [BATCH_DIM])
        for name, kind in prep.inputs]
    nums = [c for c in prep.columns if c.kind == "number"]
    cats = [c for c in prep.columns if c.kind == "category"]
    pieces = {}                                # column name -> its features, [batch, *] each
    if nums:
        axes = const("axes1", np.array([1], dtype=np.int64))
        cols = [node("Unsqueeze", [c.name, axes], f"{PREFIX}num{i}") for i, c in enumerate(nums)]
        x = cols[0] if len(cols) == 1 else node("Concat", cols, PREFIX + "num", axis=1)
        mean = const("mean", np.array([c.mean for c in nums], dtype=np.float32))
        std = const("std", np.array([c.std for c in nums], dtype=np.float32))
        nan = node("IsNaN", [x], PREFIX + "num_nan")
        x = node("Where", [nan, mean, x], PREFIX + "num_imputed")
        x = node("Sub", [x, mean], PREFIX + "num_centered")
        z = columns_of(node("Div", [x, std], PREFIX + "num_z"), len(nums), "z")
        for c, zc in zip(nums, z):
            pieces[c.name] = [zc]
        if any(c.indicator for c in nums):
            m = node("Cast", [nan], PREFIX + "num_missing", to=onnx.TensorProto.FLOAT)
            for c, mc in zip(nums, columns_of(m, len(nums), "missing")):
                if c.indicator:
                    pieces[c.name].append(mc)
    if cats:
        values = const("onehot_values", np.array([0.0, 1.0], dtype=np.float32))
    for i, c in enumerate(cats):
        keys = c.keys()
        slot = node("LabelEncoder", [c.name], f"{PREFIX}cat{i}_slot", domain=ML_DOMAIN,
                    keys_strings=list(keys), values_int64s=list(keys.values()),
                    default_int64=c.other_slot)
        depth = const(f"cat{i}_depth", np.array(c.slots, dtype=np.int64))
        pieces[c.name] = [node("OneHot", [slot, depth, values], f"{PREFIX}cat{i}_onehot",
                               axis=-1)]
    ordered = [p for c in prep.columns for p in pieces[c.name]]      # feature_names order
    if len(ordered) == 1:
        node("Identity", ordered, output)
    else:
        node("Concat", ordered, output, axis=1)
    return nodes, inits, inputs


# --- merging -------------------------------------------------------------------------------

def _opset(model, domain):
    return max((o.version for o in model.opset_import
                if o.domain == domain or (domain == "" and o.domain == "ai.onnx")), default=0)


def _subgraphs(graph):
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield attr.g
            yield from attr.graphs


def _names(graph):
    """Every value name in `graph` and its subgraphs."""
    out = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    out |= {t.name for t in graph.initializer}
    for node in graph.node:
        out.update(node.input)
        out.update(node.output)
    for sub in _subgraphs(graph):
        out |= _names(sub)
    out.discard("")
    return out


def _rename(graph, mapping):
    """Rename values per `mapping` everywhere in `graph` and its subgraphs (in place)."""
    for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        v.name = mapping.get(v.name, v.name)
    for node in graph.node:
        node.input[:] = [mapping.get(x, x) for x in node.input]
        node.output[:] = [mapping.get(x, x) for x in node.output]
    for sub in _subgraphs(graph):
        _rename(sub, mapping)

"""Two ONNX graphs as one: an upstream artifact's output feeding a downstream network.

`chain(upstream, output, network) -> bytes` (ONNX bytes in and out):

  * inputs: the upstream's graph inputs (raw columns, or the image tensor), unchanged;
  * the upstream's nodes that `output` needs (the rest, e.g. its softmax, are dropped), every
    name but its inputs prefixed "upstream/" (node names too);
  * the network's nodes, its one input replaced by "upstream/<output>"; a network value named
    like an upstream input is renamed "net/<name>";
  * outputs, metadata_props and doc of the network; the default-domain opset of the two made
    equal (onnx.version_converter lifts the lower one), other domains' imports united (the
    highest version); ir_version the higher; local functions of both.

Serialised with deterministic=True: the same two inputs give the same bytes. A ValueError
says why two graphs cannot be chained.
"""

from s2build.compile.prepgraph import _names, _opset, _rename

PREFIX = "upstream/"


def chain(upstream, output, network):
    """ONNX bytes of `upstream`'s `output` feeding `network`; see the module."""
    import onnx

    up = onnx.load_model_from_string(upstream)
    net = onnx.load_model_from_string(network)
    up, net = _same_opset(up, net)
    g, h = up.graph, net.graph
    if output not in [o.name for o in g.output]:
        raise ValueError(f"the upstream has no output {output!r}")
    up_inits = {t.name for t in g.initializer}
    feeds = [i for i in g.input if i.name not in up_inits]
    feed_names = {i.name for i in feeds}
    _rename(g, {n: PREFIX + n for n in _names(g) if n not in feed_names})
    for node in g.node:
        node.name = PREFIX + node.name
    _prune(g, PREFIX + output)

    net_inits = {t.name for t in h.initializer}
    net_in = [i.name for i in h.input if i.name not in net_inits]
    if len(net_in) != 1:
        raise ValueError(f"the network takes {len(net_in)} inputs; a chained one takes one")
    rename = {n: "net/" + n for n in _names(h) if n in feed_names or n.startswith(PREFIX)}
    rename[net_in[0]] = PREFIX + output
    _rename(h, rename)

    nodes, inits, infos = list(g.node) + list(h.node), list(g.initializer) + list(h.initializer), \
        list(g.value_info) + list(h.value_info)
    del h.input[:]
    h.input.extend(feeds)
    del h.node[:]
    h.node.extend(nodes)
    del h.initializer[:]
    h.initializer.extend(inits)
    del h.value_info[:]
    h.value_info.extend(infos)
    versions = {}
    for o in list(up.opset_import) + list(net.opset_import):
        versions[o.domain] = max(versions.get(o.domain, 0), o.version)
    del net.opset_import[:]
    net.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in sorted(versions.items()))
    have = {(f.domain, f.name) for f in net.functions}
    net.functions.extend(f for f in up.functions if (f.domain, f.name) not in have)
    net.ir_version = max(net.ir_version, up.ir_version)
    return net.SerializeToString(deterministic=True)


def _same_opset(up, net):
    """The two models at one default-domain opset (the higher)."""
    from onnx import version_converter
    a, b = _opset(up, ""), _opset(net, "")
    try:
        if a < b:
            up = version_converter.convert_version(up, b)
        elif b < a:
            net = version_converter.convert_version(net, a)
    except Exception as e:
        raise ValueError(f"the upstream uses opset {a} and the network {b}, and converting "
                         f"failed ({e}); set export.opset the same on both targets") from None
    return up, net


def _prune(graph, output):
    """Keep only the nodes and initializers `output` needs; it becomes the one output."""
    needed, kept = {output}, []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            for attr in node.attribute:            # names a subgraph reads from outside
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    needed |= _names(sub)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)

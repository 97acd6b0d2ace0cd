"""YAML with positions: every value keeps its `file:line:col`, so every config error names it.

`parse_yaml(text, fname)` composes the document with PyYAML (C loader when available) and
returns a tree of `Y` nodes. Merge keys (`<<: *defaults`) are resolved here: an explicit key
overrides a merged one wherever it stands; a key given twice explicitly is an error.
"""

import re

import yaml

from s2build.errors import ConfigError

# YAML 1.1 (PyYAML) reads `1e-3` as a string (it wants `1.0e-3`); YAML 1.2 and every user mean
# the number. A plain (unquoted) scalar of this form is a float here; a quoted one stays text.
_EXP_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

class Y:
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
                                  f"first given at {out[key][0]}; keep one of them")
            out[key] = (_mark(fname, knode), _convert(vnode, fname, constructor))
        for k, v in merged.items():
            out.setdefault(k, v)
        return Y(out, _mark(fname, node), "map")
    if isinstance(node, yaml.SequenceNode):
        return Y([_convert(n, fname, constructor) for n in node.value],
                  _mark(fname, node), "list")
    if node.tag == "tag:yaml.org,2002:str" and not node.style and _EXP_FLOAT.match(node.value):
        return Y(float(node.value), _mark(fname, node), "scalar")
    return Y(constructor.construct_object(node), _mark(fname, node), "scalar")


def _fix(text, problem, mark):
    """A fix for the common YAML mistakes, from the problem's words and the offending line."""
    line = text.splitlines()[mark.line] if mark is not None and \
        mark.line < len(text.splitlines()) else ""
    if "\t" in line[:len(line) - len(line.lstrip())] or "cannot start any token" in problem \
            and line[mark.column:mark.column + 1] == "\t":
        return "YAML indents with spaces, not tabs: replace the tab with spaces"
    if "undefined alias" in problem:
        return "an alias *NAME needs an anchor &NAME defined earlier in the file; quote the " \
               "value if '*' is meant literally"
    if "mapping values are not allowed" in problem:
        return "a value that contains ': ' must be quoted, e.g. key: \"a: b\""
    if "did not find expected key" in problem or "expected <block end>" in problem:
        return "check the indentation: keys of one mapping line up in the same column"
    if "did not find expected ',' or" in problem:
        return "a [list] or {mapping} is not closed, or an item lacks its comma"
    if "unexpected end of stream" in problem and "quoted" in problem:
        return "close the quote"
    if "another document" in problem:
        return "s2build.yaml is one YAML document: remove the '---' line"
    if "could not find expected ':'" in problem:
        return "each line of a mapping is `key: value`; check the line above for a missing " \
               "colon or an unclosed quote"
    return None


def parse_yaml(text, fname):
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{fname}:{mark.line + 1}:{mark.column + 1}" if mark else fname
        cm, hint = e.context_mark, None
        if e.context and cm is not None and mark is not None and cm.line != mark.line:
            hint = f"{e.context} started at {fname}:{cm.line + 1}:{cm.column + 1}"
        fix = _fix(text, f"{e.problem} {e.context}", mark)
        if fix:
            hint = f"{fix}; {hint}" if hint else fix
        raise ConfigError(f"invalid YAML: {e.problem or e.context}", where, hint) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", fname) from None
    if node is None:
        raise ConfigError("the file is empty", fname, "declare at least one target under 'targets:'")
    return _convert(node, fname, yaml.constructor.SafeConstructor())

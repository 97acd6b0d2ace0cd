"""The JSON Schema (draft 2020-12) of s2build.yaml, generated from schema.py.

`json_schema()` walks the loader's own tables (schema.TOP, TARGET, LOADERS, MODELS, ..., the
registry's losses and metrics, specs/parse's key lists) and returns the JSON Schema as a dict;
`text()` is the shipped file's exact content (s2build/s2build.schema.json, regenerated with
`s2build schema -o s2build/s2build.schema.json`; tests/test_schema.py fails when it is stale).
There is no second, hand-written copy: a key added to schema.py appears here on regeneration.

What the JSON Schema says, per Key kind: types, enums (`choices`), bounds (`low`, `high`),
required keys (REQUIRED), defaults, and `key:` with no value (null) wherever the loader reads it
as the default. Loader formats and model types are `if`/`then` variants on `format` and
`type`, with the loader's defaults (csv, mlp) when the selector is absent. What it cannot say
is left to the loader, which is stricter: a loss or metric that does not fit the task, `sources`
outside the project, an output that is an input, `holdout.fraction` beside `holdout.sources`,
gate metrics, duplicate spec names. Top-level keys starting with `x-` hold YAML anchors and are
ignored (config.load). Standard library only.
"""

import json
import re

from s2build.project import registry
from s2build.project.schema import (CACHE, COLUMN_KINDS, EXPORT, HOLDOUT, LOADERS, MODELS,
                                    REQUIRED, RULE, RULE_NAME, SPEC, TARGET, TARGET_NAME, TOP,
                                    TORCHRUN, TRAIN, UPSTREAM, USER_METRIC, USER_MODEL, USER_REF)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SHIPPED = "s2build/s2build.schema.json"                       # relative to the repository root
REGENERATE = f"s2build schema -o {SHIPPED}"

_SIZE = r"^\s*\d+(\.\d+)?\s*([KMGTkmgt][iI]?[Bb]?|[Bb])?\s*$"    # validate.py's size, no re.I
_INT64 = 2 ** 63


def _pattern(regex):
    """A Python regex as one both Python and ECMAScript (editors) accept: no named groups."""
    return re.sub(r"\(\?P<\w+>", "(", regex.pattern)


_USER_REF = {"type": "string", "pattern": _pattern(USER_REF)}


def _bounds(out, key):
    if key.low is not None:
        out["minimum"] = key.low
    if key.high is not None and not isinstance(key.high, str):
        out["exclusiveMaximum" if key.open_high else "maximum"] = key.high


def _value(key):
    """The JSON Schema of one non-section value, as validate._check_value accepts it."""
    k = key.kind
    if k == "str":
        return {"type": "string", "enum": list(key.choices)} if key.choices else {"type": "string"}
    if k == "char":
        return {"type": "string", "minLength": 1, "maxLength": 1, "not": {"enum": ["\r", "\n", '"']}}
    if k == "int":
        out = {"type": "integer", "minimum": -_INT64, "maximum": _INT64 - 1}
        _bounds(out, key)
        return out
    if k == "float":
        out = {"type": "number"}
        _bounds(out, key)
        return out
    if k == "bool":
        return {"type": "boolean"}
    if k == "strlist":                        # a single string stands for a list of one
        return {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    if k == "intlist":
        item = {"type": "integer", "maximum": 2 ** 31 - 1}
        if key.low is not None:
            item["minimum"] = key.low
        out = {"type": "array", "items": item}
        if key.choices and len(key.choices) == 1:        # the one allowed length
            out["minItems"] = out["maxItems"] = key.choices[0]
        return out
    if k in ("map", "tree"):
        return {"type": "object"}
    if k == "command":                        # argv (no shell), or one string with shell: true
        return {"anyOf": [{"type": "string", "minLength": 1},
                          {"type": "array", "minItems": 1, "items": {"type": "string"}}]}
    if k == "colkinds":
        return {"type": "object", "additionalProperties": {"enum": list(COLUMN_KINDS)}}
    if k == "size":
        return {"anyOf": [{"type": "integer", "minimum": 1},
                          {"type": "string", "pattern": _SIZE}]}
    if k == "classes":
        return {"anyOf": [{"type": "integer", "minimum": 2},
                          {"type": "array", "minItems": 2, "uniqueItems": True,
                           "items": {"type": ["string", "integer"]}}]}
    if k == "metrics":
        item = {"anyOf": [{"enum": list(registry.METRICS)}, _mapping(USER_METRIC, _metric)]}
        return {"anyOf": [{"enum": list(registry.METRICS)}, {"type": "array", "items": item}]}
    if k == "maplist":
        return {"type": "array", "items": _mapping(key.item, _spec)}
    raise AssertionError(k)


def _nullable(s):
    """`key:` with no value: the loader reads null as the key's default."""
    if "enum" in s:
        return {**s, "enum": s["enum"] + [None]}
    if isinstance(s.get("type"), str) and "anyOf" not in s and "not" not in s:
        return {**s, "type": [s["type"], "null"]}
    return {"anyOf": [s, {"type": "null"}]}


def _mapping(table, refine=None, sections=None):
    """An object of `table`'s keys: closed (unknown keys are errors), REQUIRED keys required.
    `sections` gives the schema of each `section` key; `refine(name, schema)` narrows one."""
    props, required = {}, []
    for name, key in table.items():
        if key.kind == "section":
            s = sections[name]
        else:
            s = _value(key)
            if refine is not None:
                s = refine(name, s)
            if key.default is not REQUIRED:
                s = _nullable(s)
        if key.default is not REQUIRED and key.kind != "section":
            default = key.default
            if isinstance(default, (str, int, float, bool, list, dict)) or default is None:
                s = {**s, "default": default}
        elif key.default is REQUIRED:
            required.append(name)
        props[name] = s
    out = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _metric(name, s):
    return _USER_REF if name == "name" else s


def _spec(name, s):
    from s2build.specs import parse           # its key lists: the one place that knows them
    if name == "example":
        return {"type": "object", "propertyNames": {"enum": list(parse.EXAMPLE_KEYS)}}
    if name == "invariance":
        return {"type": "object", "propertyNames": {"enum": list(parse.INVARIANCE_KEYS)},
                "properties": {"shift": {"type": "object",
                                         "propertyNames": {"enum": list(parse.SHIFT_KEYS)}}}}
    if name == "gate":
        return {"type": "string", "pattern": _pattern(parse.GATE)}
    return s


def _variants(table, selector, default, extra=None):
    """A section whose keys depend on `selector` (loader format, model type): one if/then per
    variant; the loader's default variant applies when the selector is absent."""
    names = list(table)
    sel = {"enum": names} if extra is None else {"anyOf": [{"enum": names}, extra]}
    branches = []
    for name, keys in table.items():
        cond = {"properties": {selector: {"const": name}}, "required": [selector]}
        if name == default:
            cond = {"anyOf": [cond, {"not": {"required": [selector]}}]}
        branches.append({"if": cond, "then": _mapping(keys)})
    if extra is not None:
        branches.append({"if": {"properties": {selector: extra}, "required": [selector]},
                         "then": _mapping(USER_MODEL, lambda n, s: extra if n == "type" else s)})
    return {"type": "object", "properties": {selector: sel}, "allOf": branches}


def _loss(name, s):
    if name != "loss":
        return s
    return {"anyOf": [{"enum": list(registry.LOSSES)}, _USER_REF]}


def json_schema():
    """The JSON Schema of s2build.yaml (a dict, draft 2020-12)."""
    loader = _variants(LOADERS, "format", "csv")
    model = _variants(MODELS, "type", "mlp", extra=_USER_REF)
    train = _mapping(TRAIN, sections={"torchrun": _mapping(TORCHRUN)})
    sections = {"loader": loader, "model": model, "train": train,
                "holdout": _mapping(HOLDOUT), "export": _mapping(EXPORT),
                "upstream": _nullable(_mapping(UPSTREAM))}
    target = _mapping(TARGET, _loss, sections)
    # a loader left out is the csv loader with no keys: its label is missing
    if any(k.default is REQUIRED for k in LOADERS["csv"].values()):
        target["required"] = sorted(set(target.get("required", [])) | {"loader"})
    targets = {"type": "object", "minProperties": 1,
               "propertyNames": {"pattern": _pattern(TARGET_NAME)},
               "additionalProperties": target}
    top = _mapping(TOP, sections={"cache": _mapping(CACHE)})
    top["properties"]["targets"] = targets
    top["properties"]["rules"] = _nullable({"type": "object",
                                            "propertyNames": {"pattern": _pattern(RULE_NAME)},
                                            "additionalProperties": _mapping(RULE)})
    top["patternProperties"] = {"^x-": {}}     # anchors for merge keys; ignored by the loader
    return {"$schema": DRAFT, "title": "s2build.yaml",
            "description": "A build file of s2build, a build system for neural networks. "
                           "Generated from s2build/project/schema.py: " + REGENERATE,
            **top}


def text():
    """The shipped file's content: indented JSON in the schema's key order, a final newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_path():
    """Where the package keeps the generated file."""
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "s2build.schema.json")

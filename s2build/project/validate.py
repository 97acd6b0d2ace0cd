"""Validation of parsed s2build.yaml against the schema (schema.py), with locations.

`check_section(path, schema, y, locs)` checks one mapping and fills defaults, recording the
location of every value in `locs` (key path -> 'file:line:col'); `check_target` resolves a
whole target: loader and model variants, training sections, loss and metrics (from the
registry, user code as `path/file.py:name`). Unknown keys and names get a did-you-mean.
"""

import difflib

from s2build.errors import ConfigError
from s2build.project import registry
from s2build.project.schema import (EXPORT, HOLDOUT, Key, LOADERS, MODELS, REQUIRED, TARGET,
                                    TORCHRUN, TRAIN, UPSTREAM, USER_METRIC, USER_MODEL, USER_REF)

_TYPE_NAMES = {"str": "a string", "char": "one character", "int": "an integer", "float": "a number", "bool": "true or false",
               "strlist": "a list of strings", "intlist": "a list of integers",
               "map": "a mapping", "section": "a mapping",
               "colkinds": "a mapping of column name to number or category",
               "size": "a size such as 1GB, 512MB or a number of bytes",
               "classes": "an integer or a list of class names",
               "command": "a list of arguments, or a string with shell: true",
               "maplist": "a list of mappings", "tree": "a mapping",
               "metrics": "a list of metric names or {name, higher_is_better} mappings"}


def _type_error(path, key, y):
    shown = repr(y.value) if y.kind == "scalar" else {"list": "a list"}.get(y.kind, "a mapping")
    shown = {"None": "null", "True": "true", "False": "false"}.get(shown, shown)
    return ConfigError(f"{'.'.join(map(str, path))}: expected {_TYPE_NAMES[key.kind]}, "
                       f"got {shown}", y.loc)


def _plain(y):
    if y.kind == "map":
        return {k: _plain(v) for k, (_, v) in y.value.items()}
    if y.kind == "list":
        return [_plain(v) for v in y.value]
    return y.value


# words users write for a choice that spelling distance would map to the wrong one
SYNONYMS = {"gpu": "cuda", "cuda:0": "cuda", "torchscript": "legacy", "onnx": "dynamo",
            "regress": "regression", "classifier": "classification"}


def _check_value(path, key, y, locs):
    """Check `y` against `key`; return its plain value (sections are handled by the caller)."""
    v = y.value
    locs[path] = y.loc
    if key.kind == "str":
        if y.kind != "scalar" or not isinstance(v, str):
            raise _type_error(path, key, y)
        if key.choices and v not in key.choices:
            close = [SYNONYMS[v]] if SYNONYMS.get(v) in key.choices else \
                difflib.get_close_matches(v, key.choices, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(key.choices)
            raise ConfigError(f"{'.'.join(map(str, path))}: unknown value '{v}'", y.loc, hint)
        return v
    if key.kind in ("int", "float"):
        ok = y.kind == "scalar" and isinstance(v, (int, float)) and not isinstance(v, bool)
        if key.kind == "int":
            ok = ok and isinstance(v, int)
        if not ok:
            raise _type_error(path, key, y)
        name = ".".join(map(str, path))
        if key.kind == "int" and not -2 ** 63 <= v < 2 ** 63:
            raise ConfigError(f"{name}: {v} does not fit a 64-bit integer", y.loc,
                              "use a number below 9223372036854775808")
        if isinstance(v, float) and v != v:
            raise ConfigError(f"{name}: expected a number, got NaN", y.loc)
        if key.low is not None and v < key.low:
            raise ConfigError(f"{name}: must be at least {key.low:g}, got {v}", y.loc)
        if key.high is not None and (v >= key.high if key.open_high else v > key.high):
            bound = "below" if key.open_high else "at most"
            raise ConfigError(f"{name}: must be {bound} {key.high:g}, got {v}", y.loc)
        return float(v) if key.kind == "float" else v
    if key.kind == "char":                   # a single character (csv delimiter)
        if y.kind != "scalar" or not isinstance(v, str) or len(v) != 1 or v in "\r\n\"":
            raise ConfigError(f"{'.'.join(map(str, path))}: expected one character, got {v!r}",
                              y.loc, "write a single character such as ',' or ';', or \"\\t\" "
                              "for a tab")
        return v
    if key.kind == "bool":
        if y.kind != "scalar" or not isinstance(v, bool):
            raise _type_error(path, key, y)
        return v
    if key.kind in ("strlist", "intlist"):
        if key.kind == "strlist" and y.kind == "scalar" and isinstance(v, str):
            return [v]                          # a single string stands for a list of one
        want = str if key.kind == "strlist" else int
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind != "scalar" or not isinstance(item.value, want) \
                    or isinstance(item.value, bool):
                raise _type_error(path + (i,), key, item)
            if key.kind == "intlist" and key.low is not None and item.value < key.low:
                raise ConfigError(f"{'.'.join(map(str, path + (i,)))}: must be at least "
                                  f"{key.low}, got {item.value}", item.loc)
            if key.kind == "intlist" and item.value >= 2 ** 31:
                raise ConfigError(f"{'.'.join(map(str, path + (i,)))}: {item.value} is too "
                                  "large", item.loc, "use a number below 2147483648")
            out.append(item.value)
        if key.high is not None and key.kind == "intlist" and key.choices \
                and len(out) not in key.choices:
            raise ConfigError(f"{'.'.join(map(str, path))}: expected {key.high}, got "
                              f"{len(out)} number{'s' if len(out) != 1 else ''}", y.loc)
        return out
    if key.kind == "command":                # rules: argv (a list) or a shell string
        if y.kind == "scalar" and isinstance(v, str) and v.strip():
            return v
        if y.kind == "list" and y.value:
            return _check_value(path, Key("strlist"), y, locs)
        raise _type_error(path, key, y)
    if key.kind == "classes":
        if y.kind == "scalar" and isinstance(v, int) and not isinstance(v, bool):
            if v < 2:
                raise ConfigError(f"{'.'.join(path)}: need at least 2 classes, got {v}", y.loc)
            return v
        for i, item in enumerate(y.value if y.kind == "list" else []):
            if isinstance(item.value, bool):
                raise ConfigError(f"{'.'.join(path)}.{i}: YAML reads this class name as "
                                  f"{str(item.value).lower()}", item.loc,
                                  "quote names such as 'yes', 'no', 'on', 'off': ['no', 'yes']")
        if y.kind == "list" and all(i.kind == "scalar" and isinstance(i.value, (str, int))
                                    for i in y.value):
            names = [str(i.value) for i in y.value]
            if len(set(names)) != len(names) or len(names) < 2:
                raise ConfigError(f"{'.'.join(path)}: need at least 2 distinct class names",
                                  y.loc)
            return names
        raise _type_error(path, key, y)
    if key.kind == "map":
        if y.kind != "map":
            raise _type_error(path, key, y)
        return _plain(y)
    if key.kind == "size":                   # train.memory: "1GB", "512MB", bytes
        import re
        if y.kind == "scalar" and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
        if y.kind == "scalar" and isinstance(v, str) and \
                re.fullmatch(r"\s*\d+(\.\d+)?\s*([KMGT]i?B?|B)?\s*", v, re.I):
            return v.strip()
        raise _type_error(path, key, y)
    if key.kind == "colkinds":               # loader.columns: {column: number | category}
        if y.kind != "map":
            raise _type_error(path, key, y)
        from s2build.project.schema import COLUMN_KINDS
        out = {}
        for k, (_kloc, item) in y.value.items():
            if item.kind != "scalar" or item.value not in COLUMN_KINDS:
                shown = item.value if item.kind == "scalar" else f"a {item.kind}"
                close = difflib.get_close_matches(str(shown), COLUMN_KINDS, n=1)
                raise ConfigError(f"{'.'.join(map(str, path + (k,)))}: {shown!r} is not a column "
                                  f"kind (did you mean '{close[0]}'?)" if close else
                                  f"{'.'.join(map(str, path + (k,)))}: {shown!r} is not a column "
                                  f"kind (use number or category)", item.loc)
            out[str(k)] = item.value
        return out
    if key.kind == "tree":                   # a mapping checked later; every node's location kept
        if y.kind != "map":
            raise _type_error(path, key, y)
        return _plain_locs(path, y, locs)
    if key.kind == "metrics":                # names, or mappings for user metrics
        if y.kind == "scalar" and isinstance(v, str):
            return [v]
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind == "map":
                out.append(check_section(path + (i,), USER_METRIC, item, locs))
            elif item.kind == "scalar" and isinstance(item.value, str):
                out.append(item.value)
            else:
                raise _type_error(path + (i,), key, item)
        return out
    if key.kind == "maplist":                # a list of mappings, each checked against key.item
        if y.kind != "list":
            raise _type_error(path, key, y)
        out = []
        for i, item in enumerate(y.value):
            locs[path + (i,)] = item.loc
            if item.kind != "map":
                raise ConfigError(f"{'.'.join(map(str, path + (i,)))}: expected a mapping, "
                                  f"got {item.value if item.kind == 'scalar' else 'a list'!r}",
                                  item.loc)
            out.append(check_section(path + (i,), key.item, item, locs))
        return out
    raise AssertionError(key.kind)


def _plain_locs(path, y, locs):
    """Plain value of `y`, recording the location of every node (keys as path + (k, '@key'))."""
    locs[path] = y.loc
    if y.kind == "map":
        out = {}
        for k, (kloc, v) in y.value.items():
            locs[path + (k, "@key")] = kloc
            out[k] = _plain_locs(path + (k,), v, locs)
        return out
    if y.kind == "list":
        return [_plain_locs(path + (i,), v, locs) for i, v in enumerate(y.value)]
    return y.value


def check_section(path, schema, y, locs, where=None):
    """Validate mapping `y` against `schema`; unknown keys get a did-you-mean. `where`: the
    location to name for a missing required key when the whole section `y` is absent (None)."""
    if y is None:
        items = {}
    elif y.kind != "map":
        got = "a list" if y.kind == "list" else repr(y.value)
        got = got if len(got) <= 40 else got[:37] + "..."
        raise ConfigError(f"{'.'.join(map(str, path)) or 'the file'}: expected a mapping, "
                          f"got {got}", y.loc)
    else:
        items = y.value
    for k, (kloc, _) in items.items():
        if k not in schema:
            close = difflib.get_close_matches(k, list(schema), n=1)
            hint = f"did you mean '{close[0]}'?" if close else \
                "known keys: " + ", ".join(sorted(schema))
            raise ConfigError(f"unknown key '{k}'", kloc, hint)
    out = {}
    for k, key in schema.items():
        if k not in items:
            if key.default is REQUIRED:
                hint = (f"add it: {k}: ..." if y is not None else
                        f"add it: {path[-1]}: {{{k}: ...}}") if path else None
                raise ConfigError(f"{'.'.join(map(str, path))}: missing required key '{k}'",
                                  y.loc if y is not None else where, hint)
            out[k] = key.default.copy() if isinstance(key.default, (list, dict)) else key.default
            continue
        kloc, vy = items[k]
        locs[path + (k,) + ("@key",)] = kloc
        if vy.kind == "scalar" and vy.value is None and key.default is not REQUIRED \
                and key.kind != "section":
            out[k] = key.default                # `key:` with no value means the default
            locs[path + (k,)] = vy.loc
            continue
        if key.kind == "section":
            locs[path + (k,)] = vy.loc
            out[k] = vy                          # resolved by the caller with its own schema
        else:
            out[k] = _check_value(path + (k,), key, vy, locs)
    return out


def _variant(path, table, y, selector, default, locs, user_ok=False, where=None):
    """Validate a section whose schema depends on one of its keys (loader format, model type);
    `where` is named when the section is absent and the default variant needs a key."""
    chosen, sel_y = default, None
    if y is not None and y.kind == "map" and selector in y.value:
        sel_y = y.value[selector][1]
        if sel_y.kind == "scalar" and isinstance(sel_y.value, str):
            chosen = sel_y.value
    if chosen in table:
        return check_section(path, table[chosen], y, locs, where)
    if user_ok and USER_REF.match(chosen or ""):
        return check_section(path, USER_MODEL, y, locs)
    where = sel_y.loc if sel_y is not None else (y.loc if y is not None else None)
    close = difflib.get_close_matches(str(chosen), list(table), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(table) + \
        (", or path/file.py:Name" if user_ok else "")
    raise ConfigError(f"{'.'.join(path)}.{selector}: unknown {selector} '{chosen}'", where, hint)


def check_target(name, ty, root, locs):
    t = check_section(("targets", name), TARGET, ty, locs)
    base = ("targets", name)
    t["loader"] = _variant(base + ("loader",), LOADERS, t["loader"] or None, "format", "csv", locs,
                           where=locs.get(base + ("@key",)) or ty.loc)
    if t["loader"]["format"] == "images" and t["loader"]["task"] != "classification":
        raise ConfigError("loader.task: image folders give classes (one folder per class)",
                          locs.get(base + ("loader", "task")))
    t["model"] = _variant(base + ("model",), MODELS, t["model"] or None, "type", "mlp", locs,
                          user_ok=True)
    for sec, schema in (("train", TRAIN), ("holdout", HOLDOUT), ("export", EXPORT)):
        t[sec] = check_section(base + (sec,), schema, t[sec] or None, locs)
    t["train"]["torchrun"] = check_section(base + ("train", "torchrun"), TORCHRUN,
                                           t["train"]["torchrun"] or None, locs)
    if t["upstream"] is not None:                   # absent: None (no upstream)
        t["upstream"] = check_section(base + ("upstream",), UPSTREAM, t["upstream"], locs)
        _check_upstream(t, base, locs)
    task = t["loader"].get("task", "classification")
    if not t["sources"]:
        raise ConfigError(f"target '{name}': 'sources' is empty", locs.get(base + ("sources",)),
                          "list at least one glob of data files")
    _check_scoring(t, task, base, locs)
    if t["output"] is None:
        t["output"] = f"build/{name}.onnx"
    if t["holdout"]["sources"] and ("targets", name, "holdout", "fraction", "@key") in locs:
        raise ConfigError("holdout: give either 'fraction' or 'sources', not both",
                          locs[base + ("holdout", "fraction")])
    return t


def _check_upstream(t, base, locs):
    """What the schema cannot say about `upstream`: soft labels need a classifier, and read
    the upstream's logits."""
    up = t["upstream"]
    if up["use"] == "soft_labels":
        if t["loader"].get("task", "classification") != "classification":
            raise ConfigError("upstream.use soft_labels distils class probabilities: the target "
                              "must be a classifier", locs.get(base + ("upstream", "use")),
                              "use features, or loader.task: classification")
        if up["output"] not in (None, "logits"):
            raise ConfigError(f"upstream.output '{up['output']}': soft labels read the "
                              "upstream's logits", locs.get(base + ("upstream", "output")),
                              "remove upstream.output")


def _check_scoring(t, task, base, locs):
    """Fill in the task's default loss and metrics; check the named ones exist and fit."""
    if t["loss"] is None:
        t["loss"] = registry.TASKS[task].default_loss
    elif t["loss"] not in registry.LOSSES and not USER_REF.match(t["loss"]):
        _unknown_name(t["loss"], list(registry.LOSSES), "loss", locs[base + ("loss",)])
    elif t["loss"] in registry.LOSSES and task not in registry.LOSSES[t["loss"]].tasks:
        raise ConfigError(f"loss '{t['loss']}' does not fit task '{task}'", locs[base + ("loss",)],
                          f"use {registry.TASKS[task].default_loss}")
    if t["metrics"] is None:
        t["metrics"] = list(registry.TASKS[task].default_metrics)
        return
    seen = {}
    for i, m in enumerate(t["metrics"]):
        loc = locs[base + ("metrics", i)]
        if isinstance(m, dict):
            name_loc = locs[base + ("metrics", i, "name")]
            if not USER_REF.match(m["name"]):
                hint = f"write just '{m['name']}': a built-in metric's direction is known" \
                    if m["name"] in registry.METRICS else "write path/file.py:function"
                raise ConfigError(f"metric '{m['name']}': a mapping names a user metric",
                                  name_loc, hint)
            if m["higher_is_better"] is None:
                raise ConfigError(f"metric '{m['name']}': missing 'higher_is_better'", loc,
                                  "say which way is better: true (like accuracy) or false "
                                  "(like an error rate)")
            ref, name = m["name"], m["name"].rpartition(":")[2]
        elif USER_REF.match(m):
            raise ConfigError(f"metric '{m}': say which way is better", loc,
                              f"write {{name: \"{m}\", higher_is_better: true}} (or false, "
                              "for an error or a loss)")
        elif m not in registry.METRICS:
            _unknown_name(m, list(registry.METRICS), "metric", loc)
        elif task not in registry.METRICS[m].tasks:
            raise ConfigError(f"metric '{m}' does not fit task '{task}'", loc,
                              "use one of: " + ", ".join(registry.metrics_for(task)))
        else:
            ref, name = m, m
        if name in seen:
            raise ConfigError(f"metric '{ref}' is reported as '{name}', like the metric at "
                              f"{seen[name]}", loc, "give each metric its own name")
        seen[name] = loc


def _unknown_name(value, known, what, loc):
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else \
        f"built-in {what}es: " + ", ".join(known) + "; or path/file.py:function"
    if what == "metric":
        hint = hint.replace("metrices", "metrics")
    raise ConfigError(f"unknown {what} '{value}'", loc, hint)

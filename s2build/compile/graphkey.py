"""The graph key: everything that determines the ONNX graph a module exports, but not its weights.

`graph_key(module, example_input, output_names=, exporter=, opset=, extra_key=)` -> (SHA-256
hex, user) where user is True when any class is from outside torch and s2build. It raises
Uncacheable(why) when the key cannot be stated honestly. compile/relink.py keys its graph cache
with it; a false hit would be a lying key, a miss only costs an export, so it errs to misses.

The graph key (SHA-256 of canonical JSON) holds everything that can change the graph:
  * the key's version, the exporter, the opset, the toolchain (toolchain.toolchain(): s2build's
    code digest, torch/onnx/onnxscript/onnx-ir versions, python, cpu), the output names;
  * the example input's full shape (batch included) and dtype, torch's default dtype; for a module with any class from
    outside torch and s2build (a user model), also the digest of its values (a traced branch
    on the data would be baked in) and of `extra_key` (the runner passes the build's user-code
    digests: the files the model's code may import);
  * the architecture: `str(module)`; per submodule (remove_duplicate=False) its class (module
    and qualified name; for a class from outside torch and s2build the SHA-256 of its source
    file), its `training` flag and every plain attribute (numbers, strings, dtypes, tuples...;
    an unregistered tensor or array by its bytes; a function by its bytecode, constants,
    defaults and closure values); every parameter and buffer (non-persistent ones too)
    by name, shape, dtype, device and requires_grad; integer and bool tensors also by value
    (relink.py does not perturb them, so their values are part of the graph).
  A module whose key cannot be stated honestly (forward hooks, an attribute of an unknown type,
  a class without a source file) is "not cacheable": exported every time.
  Metadata is not in the key: model-level metadata_props are set after export
  (export._set_metadata), exactly as export.export_onnx sets them.

Only the standard library at import; torch is imported by the functions that use it.
"""

import hashlib
import json

from s2build.engine import fingerprint
from s2build.engine import toolchain as toolchain_mod

VERSION = 1
_BUILTIN = ("torch", "s2build")
_FORWARD_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                  "_forward_pre_hooks_with_kwargs")
_TENSOR_DICTS = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")


class Uncacheable(Exception):
    """The graph key cannot be stated honestly; the text says why."""


def _is_builtin(cls):
    mod = getattr(cls, "__module__", "") or ""
    return any(mod == b or mod.startswith(b + ".") for b in _BUILTIN)


def _source_digest(cls):
    import inspect
    try:
        path = inspect.getsourcefile(cls) or inspect.getfile(cls)
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (TypeError, OSError) as e:
        raise Uncacheable(f"no source file for class {cls.__qualname__} ({e})") from None


def tensor_bytes(t):
    """The little-endian bytes of tensor `t` in C order, as ONNX raw_data holds them."""
    flat = t.detach().cpu().contiguous().reshape(-1)
    return flat.view(__import__("torch").uint8).numpy().tobytes() if flat.numel() else b""


def _plain(value, where):
    """A JSON-able statement of a plain attribute value; Uncacheable for unknown types."""
    import torch
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return [type(value).__name__, [_plain(v, where) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted(json.dumps(_plain(v, where), sort_keys=True) for v in value)]
    if isinstance(value, dict):
        return ["dict", sorted([json.dumps(_plain(k, where), sort_keys=True), _plain(v, where)]
                               for k, v in value.items())]
    if isinstance(value, (torch.dtype, torch.device, torch.Size, torch.memory_format)):
        return [type(value).__name__, str(value)]
    if isinstance(value, torch.Tensor):
        return ["tensor", str(value.dtype), list(value.shape),
                hashlib.sha256(tensor_bytes(value)).hexdigest()]
    if type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
        return ["ndarray", str(value.dtype), list(getattr(value, "shape", ())),
                hashlib.sha256(value.tobytes()).hexdigest()]
    return _code(value, where)


def _code_digest(code):
    """SHA-256 of a code object's bytecode, names and constants (nested code recursively)."""
    import types
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c)
              for c in code.co_consts]
    return hashlib.sha256(code.co_code + json.dumps([consts, list(code.co_names)]).encode()
                          ).hexdigest()


def _code(value, where):
    """A statement of a class or callable attribute: where it is defined, and for a Python
    function its bytecode, constants, defaults and closure values (a lambda closing over a
    model argument bakes that argument into the graph)."""
    import functools
    import types
    import torch
    if isinstance(value, type):
        return ["class", value.__module__, value.__qualname__] + \
            ([] if _is_builtin(value) else [_source_digest(value)])
    if isinstance(value, functools.partial):
        return ["partial", _code(value.func, where), _plain(value.args, where),
                _plain(value.keywords, where)]
    if isinstance(value, types.MethodType):
        owner = value.__self__
        bound = ["module", type(owner).__module__, type(owner).__qualname__] \
            if isinstance(owner, torch.nn.Module) else _plain(owner, where)
        return ["method", _code(value.__func__, where), bound]
    if isinstance(value, types.FunctionType):
        body = _code_digest(value.__code__)
        cells = [_plain(c.cell_contents, where) if not isinstance(c.cell_contents,
                                                                   torch.nn.Module) else
                 _code(type(c.cell_contents), where) for c in value.__closure__ or ()]
        return ["function", value.__module__ or "", value.__qualname__, body,
                _plain(value.__defaults__, where), _plain(value.__kwdefaults__, where), cells]
    if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)) \
            or type(value).__name__ in ("method_descriptor", "wrapper_descriptor"):
        owner = getattr(value, "__self__", None)
        if owner is not None and not isinstance(owner, (type, types.ModuleType)):
            raise Uncacheable(f"{where} is a method bound to a {type(owner).__name__}")
        return ["builtin", getattr(value, "__module__", None) or "", value.__qualname__]
    if isinstance(value, torch.nn.Module):
        raise Uncacheable(f"{where} holds an unregistered module")
    raise Uncacheable(f"{where} is a {type(value).__name__}, which the graph key cannot state")


def tensors(module):
    """{name: tensor} of every parameter and buffer (non-persistent and shared ones too)."""
    out = dict(module.named_parameters(remove_duplicate=False))
    out.update(module.named_buffers(remove_duplicate=False))
    return out


def architecture(module):
    """What of `module` can change its exported graph (see the module docstring), as JSON-able
    data; Uncacheable when that cannot be stated. `user` is True when any class is from
    outside torch and s2build."""
    import torch
    if any(getattr(torch.nn.modules.module, n, None) for n in
           ("_global_forward_hooks", "_global_forward_pre_hooks")):
        raise Uncacheable("global forward hooks are registered")
    subs, user = [], False
    for name, sub in module.named_modules(remove_duplicate=False):
        cls = type(sub)
        facts = {"name": name, "class": [cls.__module__, cls.__qualname__]}
        for base in cls.__mro__:
            if base is not object and not _is_builtin(base):
                user = True
                facts.setdefault("source", []).append([base.__qualname__, _source_digest(base)])
        attrs = {}
        for key, value in sorted(vars(sub).items()):
            if key in _TENSOR_DICTS:
                continue
            if "hook" in key:
                if key in _FORWARD_HOOKS and value:
                    raise Uncacheable(f"module {name or '(root)'} has forward hooks")
                continue
            attrs[key] = _plain(value, f"attribute {name + '.' if name else ''}{key}")
        facts["attrs"] = attrs
        facts["non_persistent"] = sorted(getattr(sub, "_non_persistent_buffers_set", ()))
        subs.append(facts)
    listed = []
    for name, t in sorted(tensors(module).items()):
        fact = [name, list(t.shape), str(t.dtype), str(t.device), bool(t.requires_grad)]
        if not t.is_floating_point():          # not perturbed: its values are part of the graph
            fact.append(hashlib.sha256(tensor_bytes(t)).hexdigest())
        listed.append(fact)
    return {"repr": str(module), "modules": subs, "tensors": listed}, user


def graph_key(module, example_input, *, output_names, exporter, opset, extra_key=None):
    """(key hex, user) for the graph `module` exports; Uncacheable when it cannot be stated."""
    import torch
    arch, user = architecture(module)
    facts = {"version": VERSION, "exporter": exporter, "opset": opset,
             "toolchain": toolchain_mod.toolchain("cpu", 1),
             "outputs": list(output_names), "architecture": arch,
             "input": [list(example_input.shape), str(example_input.dtype)],
             "default_dtype": str(torch.get_default_dtype())}
    if user:
        facts["input_values"] = hashlib.sha256(tensor_bytes(example_input)).hexdigest()
        facts["extra"] = extra_key
    return fingerprint.canonical_digest(facts), user

"""s2build: a build system for neural networks ("software 2.0").

Data files plus a scoring function are the source, the training loop is the compiler, an ONNX
file with its provenance inside is the binary. See README.md and the modules, in data-flow order:
config, graph, fingerprint, state, cache, data, models, scoring, train, export, verify, runner,
report, cli.

Importing this package must stay cheap: heavy libraries (torch, onnx, onnxruntime, numpy) are
imported only inside the functions that train, export or run a model.
"""

__version__ = "0.1.0"

_API = {"build": "s2build.api.session", "test": "s2build.api.session",
        "load_artifact": "s2build.api.model", "TargetResult": "s2build.api.session",
        "TestReport": "s2build.api.session", "Model": "s2build.api.model"}


def __getattr__(name):
    """The Python API, imported on first use so that `import s2build` stays cheap."""
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 's2build' has no attribute {name!r}")

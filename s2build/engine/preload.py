"""Import the training and export modules in a background thread.

A fresh process's first build spends 1-1.5 s importing torch (and onnx, onnxruntime): CPU the
data stage's parse threads leave partly idle, so the runner starts this before parsing and
joins it before training. Python's import locks make the concurrent imports safe.
"""


def start():
    """A started thread that imports the training and export modules (torch: 1-1.5 s of a
    fresh process, CPU the data stage's parse threads leave idle). Errors are left for the
    import that needs the module to raise."""
    import threading

    def work():
        import importlib
        for name in ("models", "train", "export", "verify"):
            try:
                importlib.import_module(f"s2build.compile.{name}")
            except Exception:
                return

    thread = threading.Thread(target=work, name="s2build-import", daemon=True)
    thread.start()
    return thread

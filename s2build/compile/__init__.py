"""The compiler: user code, models, scoring, the trainer, ONNX export and verification."""

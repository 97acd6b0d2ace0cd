"""Behaviour specs and metric gates: parsed from the yaml, run on the ONNX artifact."""

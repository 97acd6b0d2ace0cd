"""The project: s2build.yaml's schema and validation, the target graph, the registry of tasks, losses and metrics. Standard library and yaml only (the no-op path)."""

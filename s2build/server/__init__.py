"""The per-project build server (Bazel's client/server split): protocol.py (wire format,
socket path, code identity), client.py (stdlib only, in every CLI process), daemon.py (the warm
process that runs CLI commands)."""

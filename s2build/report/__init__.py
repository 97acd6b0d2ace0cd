"""Reporters: console, collecting and JSON (and the CI report formats)."""

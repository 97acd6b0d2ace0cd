"""Where artifacts are kept: the content-addressed local cache (local.py), the same entries shared
behind an fsspec URL (remote.py), and what `gc` and `clean` may remove (gc.py)."""

"""Where artifacts are kept: the content-addressed cache (a Store; a remote store plugs in here)."""

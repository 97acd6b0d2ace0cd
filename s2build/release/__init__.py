"""Release pipelines: test, lock, ci and verify, and the s2build.lock file."""

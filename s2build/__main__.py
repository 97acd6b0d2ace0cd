"""`python -m s2build` entry point."""
from s2build.cli.main import run

run()

"""`python -m s2build` entry point."""
import sys

try:
    from s2build.cli.main import run
except KeyboardInterrupt:           # Ctrl-C while the CLI is imported: nothing was started
    print("s2build: interrupted", file=sys.stderr)
    sys.exit(130)

run()

"""`python -m s2build` entry point."""
import sys

from s2build.cli.main import main

sys.exit(main())

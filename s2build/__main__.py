"""`python -m s2build` entry point."""
import sys

from .cli import main

sys.exit(main())

"""The data debugger: lint, blame, seeds, and predict."""

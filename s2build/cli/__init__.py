"""The command line: thin commands over the packages above; no training, data or attribution logic."""

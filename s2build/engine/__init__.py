"""The build engine: fingerprints and keys, state, staleness (explain), planning and execution, the build lock, dev-build choice and watch."""

"""The Python API (`import s2build`): build, test and load_artifact (s2build/api/session.py,
s2build/api/model.py)."""

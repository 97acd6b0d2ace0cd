"""`s2build.load_artifact(path)`: an ONNX file s2build built, as a Python object.

    m = s2build.load_artifact("examples/wine/build/wine.onnx")
    m.metadata["s2build.build_key"], m.classes, m.features
    m.predict([{"alcohol": 14.23, ...}])     # [{"prediction": "0", "probability": ...}]

Rows are dicts by feature (column) name, raw as in the data files for a table artifact (text
categories; None, "" or "NA" for missing), or arrays of one row's values for the others.
Runs on onnxruntime through compile/artifact.Artifact, the one reader of the file.
"""

import math


class Model:
    def __init__(self, path):
        from s2build.compile.artifact import Artifact
        self.path = str(path)
        self._art = Artifact(self.path)
        self.metadata = dict(self._art.meta)
        self.classes = list(self._art.classes)
        self.features = list(self._art.features)
        self.task = self._art.task
        self.metrics = dict(self._art.metrics)

    def _x(self, rows):
        import numpy as np
        art = self._art
        if art.takes_columns:
            feeds = {}
            for name, elem, _shape in art.inputs:
                if elem == "string":
                    feeds[name] = ["" if r.get(name) is None else str(r.get(name)) for r in rows]
                else:
                    feeds[name] = [_num(r.get(name)) for r in rows]
            return feeds
        x = np.asarray([np.ravel(np.asarray(r, dtype=np.float32)) for r in rows], np.float32)
        shape = art.json("s2build.input_shape")
        return x.reshape([len(x)] + list(shape)) if shape else x

    def predict(self, rows):
        """One dict per row: prediction (class name, value(s) or a 0/1 string) and, for
        classification, probability and probabilities."""
        import numpy as np
        rows = list(rows)
        if not rows:
            return []
        outputs = self._art.run(self._x(rows))
        out = []
        for i in range(len(rows)):
            if self.task == "classification":
                p = np.ravel(outputs[1][i])
                k = int(p.argmax())
                out.append({"prediction": self.classes[k], "probability": float(p[k]),
                            "probabilities": dict(zip(self.classes, map(float, p)))})
            elif self.task == "multilabel":
                p = np.ravel(outputs[1][i])
                out.append({"prediction": "".join(str(int(q > 0.5)) for q in p),
                            "probabilities": [float(q) for q in p]})
            else:
                v = [float(a) for a in np.ravel(outputs[0][i])]
                out.append({"prediction": v[0] if len(v) == 1 else v})
        return out


def _num(v):
    if v is None or (isinstance(v, str) and v.strip() in ("", "NA", "null", "NaN")):
        return math.nan
    return float(v)


def load_artifact(path):
    """The Model of the ONNX file at `path`."""
    return Model(path)

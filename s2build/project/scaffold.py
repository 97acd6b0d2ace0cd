"""The commented s2build.yaml that `s2build init` writes for a data/survey.Survey.

`yaml_text(survey, name, epochs)` gives the text: one target, the surveyed loader, a model that
fits it (mlp for tables and jsonl, a small cnn for images), modest training settings, a holdout
fraction and one holdout gate, with the survey's reasons as comments. It is valid for the
loader as written (tests/test_init.py builds it). Standard library only.
"""

import json
import os
import re

from s2build.project.schema import TARGET_NAME


def _flow(v):
    """A YAML flow value: JSON is YAML; plain words stay unquoted."""
    if isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./*-]*", v) \
            and v not in ("true", "false", "null", "yes", "no", "on", "off", "y", "n"):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return json.dumps(v)


def target_name(folder, name=None):
    """`name`, else the folder's name made into a valid target name."""
    if name:
        return name
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(os.path.abspath(folder))) or "model"
    return base if TARGET_NAME.match(base) else "t" + base


def _epochs(rows):
    """About 20,000 row visits, between 5 and 60 epochs."""
    return max(5, min(60, 20_000 // max(rows, 1)))


def summary(s):
    what = f"{len(s.classes)} image classes" if s.fmt == "images" else \
        f"label '{s.label}', {s.task}"
    return f"{s.fmt}, {what}"


def yaml_text(s, name="model", epochs=None):
    epochs = epochs or _epochs(s.rows)
    metric = {"classification": "accuracy", "multilabel": "accuracy", "regression": "r2"}[s.task]
    bound = {"accuracy": 0.8, "r2": 0.5}[metric]
    lines = ["# s2build.yaml written by `s2build init`: edit freely; every key is in",
             "# s2build.yaml.example. Build with `s2build build`, test with `s2build test`.",
             "# Editor completion: `s2build schema -o s2build.schema.json`, then a first line",
             "#   # yaml-language-server: $schema=s2build.schema.json",
             "# What init saw:"]
    lines += [f"#   {w}" for w in s.why]
    lines += ["version: 1", "targets:", f"  {name}:",
              f"    sources: {_flow(s.sources)}", "    loader:", f"      format: {s.fmt}"]
    if s.fmt == "images":
        lines += ["      channels: 1                # 3 for RGB",
                  "      scale: 0.00392156862       # 1/255: pixels in 0..1"]
        if s.size:
            lines.append(f"      size: {_flow(s.size)}")
        model = ["      type: cnn", "      channels: [16, 32]", "      pool: 2",
                 "      head: dense"]
    else:
        lines.append(f"      label: {_flow(s.label)}")
        if s.fmt == "jsonl":
            lines.append(f"      features: {_flow(s.features)}")
            if s.text:
                lines.append(f"      text: {s.text}")
        else:
            lines.append("      # features: every column but the label (kinds inferred)")
        lines.append(f"      task: {s.task}")
        model = ["      type: mlp", "      hidden: [32, 32]"]
    lines += ["    model:", *model,
              "    train:", f"      epochs: {epochs}", "      batch_size: 32",
              "      lr: 0.003", "      seed: 0",
              "    holdout:", "      fraction: 0.2              # by a hash of each row",
              "      seed: 0",
              f"    output: build/{name}.onnx",
              "    specs:                       # run by `s2build test` on the ONNX file",
              f"      - name: holdout {metric}",
              f"        gate: {metric} >= {bound}"]
    return "\n".join(lines) + "\n"

"""Loaders and user code through the real CLI: each format builds, malformed input is reported at
its origin, and the previous artifact survives every failure."""

import io
import json
import textwrap

import numpy as np

from conftest import cache_listing, run, sha256


def project(tmp_path, target_yaml, files):
    """A one-target project `t`: yaml body (indented under the target) and data files."""
    d = tmp_path / "p"
    d.mkdir()
    for name, content in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    (d / "s2build.yaml").write_text("targets:\n  t:\n" + textwrap.indent(
        textwrap.dedent(target_yaml), "    ") + "    train: {epochs: 3, batch_size: 16}\n"
        "    export: {exporter: legacy}\n")
    return d


def two_blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 4)).astype(np.float32) + y[:, None] * 3.0
    return x, y


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def jsonl(x, y):
    return "".join(json.dumps({"f": [float(v) for v in r], "label": int(l)}) + "\n"
                   for r, l in zip(x, y))


def png(value, size=4):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def built(d):
    p = run(["build"], d, check=0)
    assert p.stdout.startswith("t: built in"), p.stdout
    return sha256(d / "build" / "t.onnx"), cache_listing(d)


def broken(d, rel, content, message, code=4):
    before = (sha256(d / "build" / "t.onnx"), cache_listing(d))
    (d / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    p = run(["build"], d, check=code)
    assert p.stderr.strip().splitlines()[-1] == message
    assert (sha256(d / "build" / "t.onnx"), cache_listing(d)) == before


def test_jsonl_builds_and_bad_json_is_reported_at_its_line(tmp_path):
    x, y = two_blobs()
    d = project(tmp_path, """
        sources: [data.jsonl]
        loader: {format: jsonl, features: [f], label: label, classes: 2}
    """, {"data.jsonl": jsonl(x, y)})
    built(d)
    lines = jsonl(x, y).splitlines(keepends=True)
    lines[6] = '{"f": [1, 2, 3, 4], "label": 1\n'
    broken(d, "data.jsonl", "".join(lines),
           "data.jsonl:7: invalid JSON: Expecting ',' delimiter (column 31)")
    lines[6] = '{"f": [1, 2, 3], "label": 1}\n'
    broken(d, "data.jsonl", "".join(lines),
           "data.jsonl:7: 3 feature values, but earlier rows have 4")
    lines[6] = '{"f": "some words", "label": 1}\n'
    broken(d, "data.jsonl", "".join(lines), "data.jsonl:7: field 'f' is text "
           "(set loader.text to 'digits' or 'hash' to turn text into numbers)")


def test_jsonl_text_fields_with_hashing(tmp_path):
    words = ["good great fine nice", "bad awful poor sad"]
    rows = "".join(json.dumps({"text": f"{words[i % 2]} {i}", "label": ["pos", "neg"][i % 2]}) + "\n"
                   for i in range(60))
    d = project(tmp_path, """
        sources: [data.jsonl]
        loader: {format: jsonl, features: [text], label: label, text: hash, buckets: 32}
    """, {"data.jsonl": rows})
    built(d)
    (d / "q.jsonl").write_text(json.dumps({"text": "awful poor"}) + "\n")
    assert run(["predict", "t", "q.jsonl"], d, check=0).stdout.startswith("q.jsonl:1: neg")


def test_npz_builds_and_nan_is_reported_at_its_index(tmp_path):
    x, y = two_blobs()
    d = project(tmp_path, """
        sources: [data.npz]
        loader: {format: npz, features: x, label: y}
    """, {"data.npz": npz_bytes(x=x, y=y)})
    built(d)
    x[17, 2] = np.nan
    broken(d, "data.npz", npz_bytes(x=x, y=y),
           "data.npz[17]: array 'x' holds NaN or inf (fix or remove the row)")
    broken(d, "data.npz", npz_bytes(inputs=x, y=y),
           "data.npz: no array 'x' in the archive (has: inputs, y)")


def test_npy_builds_and_nan_is_reported_at_its_index(tmp_path):
    x, y = two_blobs()
    arr = np.concatenate([x, y[:, None]], axis=1)
    d = project(tmp_path, """
        sources: [data.npy]
        loader: {format: npy, label_column: -1}
    """, {"data.npy": npy_bytes(arr)})
    built(d)
    arr[3, 0] = np.inf
    broken(d, "data.npy", npy_bytes(arr),
           "data.npy[3]: array holds NaN or inf (fix or remove the row)")


def test_image_folders_and_an_unreadable_image(tmp_path):
    files = {f"img/{c}/{i}.png": png(40 + 170 * (c == "light") + i) for c in ("dark", "light")
             for i in range(12)}
    d = project(tmp_path, """
        sources: [img/*/*.png]
        loader: {format: images, size: [4, 4]}
        model: {type: cnn, channels: [4], pool: 2}
        holdout: {fraction: 0.25}
    """, files)
    built(d)
    p = run(["predict", "t", "img/light/3.png"], d, check=0)
    assert p.stdout.startswith("img/light/3.png: ")
    before = (sha256(d / "build" / "t.onnx"), cache_listing(d))
    (d / "img/dark/5.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    p = run(["build"], d, check=4)
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("img/dark/5.png: cannot decode image: ")
    assert last.endswith("(replace or remove the file)")
    assert (sha256(d / "build" / "t.onnx"), cache_listing(d)) == before


def test_user_model_that_fails_to_construct(tmp_path):
    x, y = two_blobs()
    d = project(tmp_path, """
        sources: [data.npz]
        loader: {format: npz}
        model: {type: "net.py:Net", args: {width: 8}}
    """, {"data.npz": npz_bytes(x=x, y=y),
          "net.py": "import torch\n\n\nclass Net(torch.nn.Sequential):\n"
                    "    def __init__(self, in_features, out_features, in_shape, width):\n"
                    "        super().__init__(torch.nn.Linear(in_features, width), torch.nn.ReLU(),\n"
                    "                         torch.nn.Linear(width, out_features))\n"})
    built(d)
    broken(d, "net.py", "import torch\n\n\nclass Net(torch.nn.Module):\n"
                        "    def __init__(self, in_features, out_features, in_shape, width):\n"
                        "        raise ValueError(f'width {width} is too small')\n",
           "net.py:6: model net.py:Net raised ValueError: width 8 is too small", code=5)


def test_user_loss_with_the_wrong_shape(tmp_path):
    x, y = two_blobs()
    d = project(tmp_path, """
        sources: [data.npz]
        loader: {format: npz}
        loss: "my_loss.py:loss"
    """, {"data.npz": npz_bytes(x=x, y=y),
          "my_loss.py": "import torch.nn.functional as F\n\n\ndef loss(outputs, targets):\n"
                        "    return F.cross_entropy(outputs, targets)\n"})
    built(d)
    broken(d, "my_loss.py", "import torch.nn.functional as F\n\n\ndef loss(outputs, targets):\n"
                            "    return F.cross_entropy(outputs, targets, reduction='none')\n",
           "s2build.yaml:6:11: loss my_loss.py:loss returned [16], expected a scalar tensor "
           "(reduce it, e.g. with .mean())", code=5)


def test_loss_that_does_not_fit_the_task(tmp_path):
    x, y = two_blobs()
    d = project(tmp_path, """
        sources: [data.npz]
        loader: {format: npz}
        loss: mse
    """, {"data.npz": npz_bytes(x=x, y=y)})
    p = run(["build"], d, check=3)
    assert p.stderr.strip() == "s2build.yaml:6:11: loss 'mse' does not fit task 'classification' " \
                               "(use cross_entropy)"


def test_regression_with_several_outputs(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    y = np.stack([x[:, 0] * 2, x[:, 1] - x[:, 2]], axis=1)
    d = project(tmp_path, """
        sources: [data.npz]
        loader: {format: npz, task: regression}
        metrics: [mse, r2]
    """, {"data.npz": npz_bytes(x=x, y=y)})
    built(d)
    record = json.loads((d / "build" / "t.onnx.json").read_text())
    assert set(record["metrics"]) == {"mse", "r2"}


def _csv_error(tmp_path, loader_yaml, text):
    d = project(tmp_path, f"""
        sources: [data.csv]
        loader: {loader_yaml}
    """, {"data.csv": text})
    return run(["build"], d, check=4).stderr.strip().splitlines()[-1]


def test_a_duplicate_csv_header_is_an_error_naming_the_column(tmp_path):
    text = "a,b,a,y\n" + "".join(f"{i},{i + 1},{-i},{i % 2}\n" for i in range(20))
    assert _csv_error(tmp_path, "{label: y}", text) == \
        "data.csv:1: duplicate column 'a' in the header (give every column its own name)"


def test_the_label_listed_as_a_feature_is_an_error(tmp_path):
    text = "a,b,y\n" + "".join(f"{i},{i + 1},{i % 2}\n" for i in range(20))
    assert _csv_error(tmp_path, "{label: y, features: [a, y]}", text) == \
        "data.csv:1: 'y' is both the label and a feature " \
        "(remove 'y' from loader.features in s2build.yaml)"


def test_underscores_in_numbers_are_not_numbers(tmp_path):
    text = "a,b,y\n1.5,2,0\n1_0,3,1\n" + "".join(f"{i},{i + 1},{i % 2}\n" for i in range(20))
    assert _csv_error(tmp_path, "{label: y}", text) == (
        "data.csv:3: column 'a': '1_0' is not a number "
        "(fix the cell, or declare the column a category: loader.columns: {a: category})")


def test_jsonl_lines_split_on_newlines_only(tmp_path):
    """U+2028 (and other characters str.splitlines() splits on) may stand inside a JSON
    string; '\\r\\n' line ends work too, and an error names the right line."""
    x, y = two_blobs()
    rows = [json.dumps({"f": [float(v) for v in r], "label": int(l), "note": "a\u2028b\x85c\x0cd"},
                       ensure_ascii=False) for r, l in zip(x, y)]
    d = project(tmp_path, """
        sources: [data.jsonl]
        loader: {format: jsonl, features: [f], label: label, classes: 2}
        holdout: {fraction: 0.25}
    """, {"data.jsonl": "\r\n".join(rows) + "\r\n"})
    built(d)
    record = json.loads((d / "build" / "t.onnx.json").read_text())
    assert record["rows"]["train"] + record["rows"]["holdout"] == len(rows)
    rows[9] = '{"f": [1, 2], "label": 1}'
    broken(d, "data.jsonl", "\r\n".join(rows) + "\r\n",
           "data.jsonl:10: 2 feature values, but earlier rows have 4")

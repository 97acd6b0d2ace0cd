"""What every source file of a target must agree on: the same features (names, kinds,
shapes) and label width, and, for image folders, that each image sits in a class folder."""

import os

from s2build.data.cells import origin
from s2build.errors import DataError


def check_class_folders(rels):
    """An image's folder is its class, so an image in a folder that also holds class folders
    (data/x.png beside data/cat/) is in none: an error, never a class named 'data'."""
    folders = {os.path.dirname(r) for r in rels}
    for rel in sorted(rels):
        folder = os.path.dirname(rel)
        inner = next((f for f in sorted(folders) if f.startswith(folder + "/")
                      or (not folder and f)), None)
        if inner is not None:
            raise DataError(f"image is not in a class folder: its folder '{folder or '.'}' "
                            f"holds the class folder '{inner}'", rel,
                            f"move it into the folder of its class, e.g. {inner}/")


def check_same(parts, fmt, task):
    """Every file of a target has the same features (names, kinds, shapes) and label width."""
    ref_rel, ref = next(((r, bs[0]) for r, bs in parts if bs), (None, None))
    if fmt == "images":
        check_class_folders([rel for rel, _ in parts])
    for rel, blocks in parts:
        for b in blocks:
            if fmt == "images" and b.x.shape[1:] != ref.x.shape[1:]:
                (c, h, w), (rc, rh, rw) = b.x.shape[1:], ref.x.shape[1:]
                raise DataError(f"image is {h}x{w} with {c} channel(s); '{ref_rel}' is "
                                f"{rh}x{rw} with {rc}", rel,
                                f"set loader.size: [{rh}, {rw}] to resize every image")
            if b.features != ref.features or b.kinds != ref.kinds or \
                    b.x.shape[1:] != ref.x.shape[1:]:
                raise DataError(f"features {b.features} {list(b.x.shape[1:])} differ from those "
                                f"of '{ref_rel}' {ref.features} {list(ref.x.shape[1:])}",
                                origin(rel, 1, fmt) if fmt in ("csv", "jsonl") else rel,
                                "every source file of a target needs the same features")
            if task != "classification" and b.labels.shape[1:] != ref.labels.shape[1:]:
                raise DataError(f"label has {b.labels.shape[1]} values; '{ref_rel}' has "
                                f"{ref.labels.shape[1]}", rel)
    return ref

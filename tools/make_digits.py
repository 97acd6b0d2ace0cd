"""Write scikit-learn's digits dataset as 8x8 grayscale PNGs, one folder per class.

Run from the project root:  .venv/bin/python tools/make_digits.py

Output: examples/digits/data/<label>/<index>.png, where <index> is the zero-padded position of
the sample in sklearn.datasets.load_digits() order (0000..1796) and pixel = round(value*255/16).
PNGs are written with the standard library (zlib + struct), so the output is byte-for-byte
deterministic and needs no Pillow.
"""
from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples" / "digits" / "data"


def png_gray8(pixels: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale PNG (no filtering, zlib level 9)."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    h, w = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))  # filter type 0 per row
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit, grayscale, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main() -> int:
    digits = load_digits()
    images = np.rint(digits.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    for label in range(10):
        (OUT / str(label)).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(images, digits.target)):
        (OUT / str(int(label)) / f"{i:04d}.png").write_bytes(png_gray8(img))
    print(f"wrote {len(images)} PNGs under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image thumbnails for the HTML report: the file behind a row's origin (loader format
`images`: the origin is the image's path) as an inline `data:image/png;base64,...` URI, so the
page stays one self-contained file.

A small image is enlarged by a whole factor with nearest-neighbour sampling (an 8x8 digit
becomes 64x64, its pixels sharp squares); a large one is reduced to fit THUMB pixels. A target's
page holds at most MAX_THUMBS distinct thumbnails (an origin shown twice is encoded once and
counts once); past that, and for any file that is missing, outside the project or not an image,
`Thumbs(origin)` gives None and the page shows the origin alone. Pillow loads here, lazily.
"""

import base64
import io
import os

THUMB = 64          # pixels of a thumbnail's longer side (at most)
MAX_THUMBS = 48     # distinct thumbnails per target


class Thumbs:
    """`thumbs(origin)` -> data URI or None, for the rows of one target."""

    def __init__(self, target, limit=MAX_THUMBS):
        self.root = os.path.realpath(target.root)
        self.on = target.config["loader"].get("format") == "images"
        self.limit, self.uris = limit, {}

    def __call__(self, origin):
        if not self.on or origin is None:
            return None
        origin = str(origin)
        if origin in self.uris:
            return self.uris[origin]
        if len(self.uris) >= self.limit:
            return None
        path = os.path.realpath(os.path.join(self.root, origin))
        inside = path.startswith(os.path.join(self.root, "")) and not os.path.isabs(origin)
        self.uris[origin] = uri = png_uri(path) if inside else None
        return uri

    @property
    def shown(self):
        return sum(u is not None for u in self.uris.values())


def png_uri(path, size=THUMB):
    """The image at `path` as a PNG data URI no larger than size x size, or None when it does
    not open as an image."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            w, h = im.size
            if max(w, h) <= size:                       # enlarge by a whole factor, sharp
                k = max(1, size // max(w, h))
                im = im.resize((w * k, h * k), Image.Resampling.NEAREST)
            else:
                im = im.copy()
                im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

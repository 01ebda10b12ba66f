"""Making thumbnails, run in a render process: Pillow's `thumbnail()` into each box, as WebP.

Every error from a library becomes plain data (`Made.problem`), never an exception crossing
the process boundary. Files are written under a temporary name and renamed, so a reader (or a
process that died half-way) never leaves a half-written thumbnail under its real name.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from ocr_gateway.core.errors import describe

# The boxes of `/images`, by the names the thumbnail service's clients use.
IMAGE_BOXES: dict[str, tuple[int, int]] = {
    "100x100": (100, 100),
    "300x300": (300, 300),
    "1200x1200": (1200, 1200),
}
THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_MEDIA_TYPE = "image/webp"
THUMBNAIL_SUFFIX = ".webp"
# `Image.thumbnail()`'s defaults, which `fit` follows.
THUMBNAIL_RESAMPLING = Image.Resampling.BICUBIC
THUMBNAIL_REDUCING_GAP = 2.0
# 16-bit and float images (scientific TIFFs) are scaled into 8 bits before encoding.
_WIDE_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """One thumbnail written: its box's name, its pixel size, its bytes and its strong ETag."""

    box: str
    width: int
    height: int
    size_bytes: int
    etag: str


@dataclass(frozen=True, slots=True)
class Made:
    """The original's displayed size and its thumbnails, or why none could be made."""

    width: int = 0
    height: int = 0
    thumbnails: tuple[Thumbnail, ...] = ()
    problem: str | None = None


def thumbnail_name(box: str) -> str:
    return f"{box}{THUMBNAIL_SUFFIX}"


def displayable(image: Image.Image) -> Image.Image:
    """The image as it is meant to be seen, in a mode WebP encodes: the first frame, turned
    by its EXIF orientation, in RGB (RGBA when it has transparency, L when gray)."""
    ImageOps.exif_transpose(image, in_place=True)  # loads it; no copy when it is upright
    if image.mode in _WIDE_MODES:
        if image.mode != "F":
            image = image.convert("I").point(lambda value: value * (1 / 256))
        return image.convert("L")
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def thumbnail_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int] | None:
    """The size Pillow's `thumbnail(box)` gives an image of `size` (its own arithmetic: the
    aspect ratio kept as closely as whole pixels allow), or None when it fits already."""
    width, height = size
    x, y = box
    if x >= width and y >= height:
        return None
    aspect = width / height

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def fit(image: Image.Image, box: tuple[int, int]) -> Image.Image:
    """What Pillow's `thumbnail(box)` makes of a loaded image (same size, same resampling,
    same reducing gap), as a new image: no copy of the full-size original per box."""
    size = thumbnail_size(image.size, box)
    if size is None or size == image.size:
        return image
    return image.resize(size, THUMBNAIL_RESAMPLING, reducing_gap=THUMBNAIL_REDUCING_GAP)


def encode(image: Image.Image, box: tuple[int, int], quality: int) -> tuple[Image.Image, bytes]:
    """`image` made to fit `box` as Pillow's `thumbnail()` makes it (aspect kept, never
    enlarged), and its WebP bytes."""
    thumb = fit(image, box)
    buffer = io.BytesIO()
    thumb.save(buffer, THUMBNAIL_FORMAT, quality=quality)
    return thumb, buffer.getvalue()


def strong_etag(data: bytes) -> str:
    """A strong ETag (quoted) from the bytes themselves."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def write_atomically(path: str, data: bytes) -> None:
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def make_thumbnails(
    source: str, out_dir: str, boxes: dict[str, tuple[int, int]], quality: int, max_pixels: int
) -> Made:
    """Decode `source` once and write `<box>.webp` into `out_dir` for each box."""
    try:
        Image.MAX_IMAGE_PIXELS = max_pixels
        with Image.open(source) as opened:
            image = displayable(opened)
        made = []
        for name, box in boxes.items():
            thumb, data = encode(image, box, quality)
            write_atomically(os.path.join(out_dir, thumbnail_name(name)), data)
            made.append(Thumbnail(name, thumb.width, thumb.height, len(data), strong_etag(data)))
        return Made(image.width, image.height, tuple(made))
    except Exception as exc:  # whatever a library raises on hostile bytes is the file's fault
        return Made(problem=f"the thumbnails could not be made: {describe(exc)}")


def make_page_thumbnail(source: str, target: str, box: int, quality: int) -> Made:
    """One thumbnail of a job's page PNG, written to `target`."""
    try:
        with Image.open(source) as opened:
            image = displayable(opened)
        thumb, data = encode(image, (box, box), quality)
        write_atomically(target, data)
        made = Thumbnail(f"{box}x{box}", thumb.width, thumb.height, len(data), strong_etag(data))
        return Made(image.width, image.height, (made,))
    except Exception as exc:
        return Made(problem=f"the thumbnail could not be made: {describe(exc)}")

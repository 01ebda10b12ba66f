"""Making thumbnails, run in a render process: Pillow's `thumbnail()` into each box, as WebP.

Every error from a library becomes plain data (`Made.problem`), never an exception crossing
the process boundary. Files are written under a temporary name and renamed, so a reader (or a
process that died half-way) never leaves a half-written thumbnail under its real name.
"""

from __future__ import annotations

import hashlib
import io
import os
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
    image = ImageOps.exif_transpose(image)
    if image.mode in _WIDE_MODES:
        if image.mode != "F":
            image = image.convert("I").point(lambda value: value * (1 / 256))
        return image.convert("L")
    if image.mode in ("L", "RGB", "RGBA"):
        return image
    if image.mode == "1":
        return image.convert("L")
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def encode(image: Image.Image, box: tuple[int, int], quality: int) -> tuple[Image.Image, bytes]:
    """A copy of `image` made to fit `box` by Pillow's `thumbnail()` (aspect kept, never
    enlarged), and its WebP bytes."""
    thumb = image.copy()
    thumb.thumbnail(box)
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

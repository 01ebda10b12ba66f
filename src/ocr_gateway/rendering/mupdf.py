"""PyMuPDF as the pool processes load it, the render options, and the pixel arithmetic.

Imported only inside pool processes (and by code that runs there), never on the event loop.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import cast

from PIL import Image

# PyMuPDF 2 imports its optional layout-analysis model (ONNX Runtime, NumPy) and pymupdf4llm when
# it is imported: about 90 MB and a second or more in every pool process, none of it used for
# rasterising. Declaring them absent makes `import pymupdf` skip them, as when not installed.
for _unused in ("pymupdf.layout", "pymupdf4llm"):
    sys.modules.setdefault(_unused, cast(ModuleType, None))

import pymupdf  # noqa: E402

__all__ = ["RenderOptions", "follow_pixel_budget", "page_pixels", "pymupdf", "warm_up"]


@dataclass(frozen=True, slots=True)
class RenderOptions:
    dpi: int
    grayscale: bool
    max_page_pixels: int


# MuPDF rounds a scaled page outwards to whole pixels, forgiving this much (its FZ_EPSILON).
ROUNDING_SLACK = 0.001


def page_pixels(width_pt: float, height_pt: float, dpi: int) -> int:
    """Pixels of a page of `width_pt` x `height_pt` points rendered at `dpi`, exactly as MuPDF
    sizes its pixmap: each side rounded up, so the budget check never underestimates a page."""
    scale = dpi / 72.0
    return _side(width_pt * scale) * _side(height_pt * scale)


def _side(length: float) -> int:
    return max(0, math.ceil(length - ROUNDING_SLACK))


def follow_pixel_budget(options: RenderOptions) -> None:
    """Make Pillow's decompression-bomb check use the gateway's budget, not its own default.

    Pillow then refuses an oversized header in `Image.open`, before decoding a pixel, and never
    refuses an image the budget allows (its default is 89 Mpx; MAX_PAGE_PIXELS may be higher).
    """
    Image.MAX_IMAGE_PIXELS = options.max_page_pixels


def warm_up() -> int:
    """A pool's start-up probe from this module, so its workers import PyMuPDF before use."""
    return os.getpid()

"""img2table, behind two small calls: find the tables on a raster, fill them from given words.

img2table finds the structure on the image (ruling lines, or aligned columns of text for a
borderless table) and assigns words to cells; it is handed words we already have (the worker's
OCR boxes, or a PDF's text layer) through `KnownWords`, so no page is read twice. Its own OCR
classes are never used, and it downloads nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np
from img2table.document import Image as Img2TableImage
from img2table.ocr._types import OCRData, OCRInstance

from ocr_gateway.tables.model import Table, from_grid

# The finder runs inside the render and OCR pools, whose processes are the parallelism (one per
# core); OpenCV's own thread per core inside each would oversubscribe the cores.
cv2.setNumThreads(1)

# img2table drops words whose confidence (0-99) is under this (its default is 50). The engines
# already dropped what they could not read, and a cell's 0.45 read at 0.48 is still its text.
MIN_CONFIDENCE = 1


@dataclass(frozen=True, slots=True)
class Word:
    """A word or line in raster pixels; words with the same `line` are joined by a space."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    line: str
    confidence: float = 1.0


class KnownWords(OCRInstance):  # type: ignore[misc]
    """An img2table OCR that answers with words read before (one page)."""

    def __init__(self, words: Iterable[Word]) -> None:
        self.records = [
            {
                "id": f"word_{index}",
                "parent": word.line,
                "value": word.text,
                "confidence": round(99 * word.confidence),
                "x1": round(word.x0),
                "y1": round(word.y0),
                "x2": round(word.x1),
                "y2": round(word.y1),
            }
            for index, word in enumerate(words)
            if word.text.strip()
        ]

    def of(self, document: Any) -> OCRData | None:
        return OCRData(records={0: self.records}) if self.records else None


@dataclass
class _Raster(Img2TableImage):  # type: ignore[misc]
    """An img2table image made from pixels already decoded (RGB), not from file bytes."""

    pixels: np.ndarray[Any, Any] | None = None

    @cached_property
    def images(self) -> list[np.ndarray[Any, Any]]:
        assert self.pixels is not None
        return [self.pixels]


def as_rgb(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """img2table expects 3 channels."""
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    return pixels


def find_tables(
    pixels: np.ndarray[Any, Any], words: Sequence[Word], *, scale: float = 1.0
) -> list[Table]:
    """The tables on `pixels` (gray, or RGB), cells filled from `words`, ruled and
    borderless alike; bboxes are multiplied by `scale` (raster pixels → output units)."""
    if not any(word.text.strip() for word in words):
        return []
    document = _Raster(src=b"", pixels=as_rgb(pixels))
    found = document.extract_tables(
        ocr=KnownWords(words),
        implicit_rows=False,
        implicit_columns=False,
        borderless_tables=True,
        min_confidence=MIN_CONFIDENCE,
    )
    tables: list[Table] = []
    for extracted in found:
        grid = [
            [(_cell_key(cell), (cell.value or "").strip()) for cell in cells]
            for cells in extracted.content.values()
        ]
        box = extracted.bbox
        bbox = (box.x1 * scale, box.y1 * scale, box.x2 * scale, box.y2 * scale)
        tables.append(from_grid(bbox, grid))
    return tables


def _cell_key(cell: Any) -> tuple[int, int, int, int]:
    """img2table repeats one cell object over the positions it spans: its box identifies it."""
    box = cell.bbox
    return (box.x1, box.y1, box.x2, box.y2)

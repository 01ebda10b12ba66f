"""Tables on an image or a scanned page, filled from the OCR boxes the worker already has."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ocr_gateway.tables.finder import Word, find_tables
from ocr_gateway.tables.model import Table


def tables_from_image(png: bytes, boxes: Sequence[dict[str, Any]]) -> list[Table]:
    """The tables on the page image `png`, their cells filled from `boxes`.

    `boxes` are the result message's OCR boxes (`{"bbox": [x0, y0, x1, y1], "text",
    "confidence"}`, PNG pixels, one per recognised line): each box is one line of a cell, so
    the page is never OCRed twice. Bboxes come out in the same PNG pixels. CPU-bound: call it
    in the OCR process pool.
    """
    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image if image.mode == "L" else image.convert("RGB"))
    words = [
        Word(
            float(box["bbox"][0]),
            float(box["bbox"][1]),
            float(box["bbox"][2]),
            float(box["bbox"][3]),
            text=str(box.get("text") or ""),
            line=f"box_{index}",
            confidence=1.0 if box.get("confidence") is None else float(box["confidence"]),
        )
        for index, box in enumerate(boxes)
    ]
    return find_tables(pixels, words)

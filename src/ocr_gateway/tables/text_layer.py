"""Tables of a born-digital PDF page, read from its text layer: no OCR.

The structure is found by img2table on a grayscale raster of the page (ruling lines, or aligned
columns for a borderless table) and the cells are filled with the page's own words. PyMuPDF's
`Table.extract()` is not used: it was measured turning "0.45" into "0 45\\n.", and its
`find_tables(strategy="text")` found 3 of 20 cells of a borderless table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymupdf

from ocr_gateway.tables.finder import Word, find_tables
from ocr_gateway.tables.model import Table

# The raster img2table finds the structure on (the text comes from the text layer, so this
# only has to show rules and text blocks). Its OpenCV passes cost in proportion to the pixels:
# 100 DPI took half the time of 150 and read every cell of the generated tables alike, ruled
# with 0.1 pt hairlines or borderless, down to 5.5 pt text.
DETECT_DPI = 100


def tables_from_text_layer(page: pymupdf.Page, dpi: int) -> list[Table]:
    """The tables of `page`, their bboxes in the pixels of the page's PNG rendered at `dpi`
    (as `rendering/pages.py` renders it: rotation applied), the same units as OCR boxes.

    Pure and CPU-bound (~0.1-0.3 s a page): call it in the render pool, where the page is
    open. A page with no words gives `[]` without rasterising anything.
    """
    detect = pymupdf.Matrix(DETECT_DPI / 72.0, DETECT_DPI / 72.0)
    to_raster = page.rotation_matrix * detect
    words: list[Word] = []
    for x0, y0, x1, y1, text, block, line, _ in page.get_text("words", sort=True):
        rect = pymupdf.Rect(x0, y0, x1, y1) * to_raster
        words.append(Word(rect.x0, rect.y0, rect.x1, rect.y1, text, f"{block}_{line}"))
    if not words:
        return []
    pixmap = page.get_pixmap(matrix=detect, colorspace=pymupdf.csGRAY, alpha=False)
    pixels: np.ndarray[Any, Any] = np.frombuffer(pixmap.samples, dtype=np.uint8).reshape(
        pixmap.height, pixmap.width
    )
    return find_tables(pixels, words, scale=dpi / DETECT_DPI)

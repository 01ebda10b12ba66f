"""The pixel arithmetic behind the page budget: what a page costs at a given DPI."""

from __future__ import annotations

import pytest

from ocr_gateway.rendering.mupdf import page_pixels


@pytest.mark.parametrize(
    ("width_pt", "height_pt", "dpi", "pixels"),
    [
        (595, 842, 72, 595 * 842),  # A4 at 72 DPI: one pixel a point
        (595, 842, 144, 1190 * 1684),
        (612, 792, 200, 1700 * 2200),  # US Letter at 200 DPI
        (612, 792, 150, 1275 * 1650),
        (100.4, 100.6, 72, 101 * 101),  # each side is rounded up, then multiplied
        (100.0004, 100, 72, 100 * 100),  # within MuPDF's rounding slack
        (1, 1, 36, 1),  # half a pixel is a pixel
        (0, 842, 600, 0),
        (14400, 14400, 600, 120_000 * 120_000),  # the largest PDF page, at the highest DPI
    ],
)
def test_page_pixels(width_pt: float, height_pt: float, dpi: int, pixels: int) -> None:
    assert page_pixels(width_pt, height_pt, dpi) == pixels


def test_page_pixels_match_what_pymupdf_renders() -> None:
    """The estimate is the size of the pixmap PyMuPDF renders, to the pixel, for whole and
    fractional page sizes alike, so a page within the budget renders within it."""
    from ocr_gateway.rendering.mupdf import pymupdf

    sizes = ((595, 842), (612, 792), (300, 421), (300.5, 421.3), (10.2, 7.7), (1190.45, 841.89))
    with pymupdf.open() as document:
        for width, height in sizes:
            page = document.new_page(width=width, height=height)
            for dpi in (72, 96, 144, 150, 200, 216, 300):
                pixmap = page.get_pixmap(dpi=dpi)
                estimate = page_pixels(page.rect.width, page.rect.height, dpi)
                assert estimate == pixmap.width * pixmap.height, (width, height, dpi)

"""Tables on page images, through the worker's own OCR pool function: the shipped environment
(OpenCV with contrib, RapidOCR, img2table) and the accuracy targets, ruled tables at 200 DPI
≥ 95% of cells exact and borderless aligned columns ≥ 80%.

The pages are drawn here with Pillow (tests/support/tables.py); each goes through
`recognize_page(image_base64, tables=True)` in a real OCR process, as the worker runs it.
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import AsyncIterator

import pytest

from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.worker.layout import OcrOutput
from ocr_gateway.worker.process import engine_name, ocr_pool, recognize_page
from tests.support.tables import TablePage, borderless_pages, cell_accuracy, ruled_pages

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra (make install does)",
)

# Three tables of each kind (60 cells each) keep this under a minute; bench section 12 runs
# all five of each and reports the figures.
RULED = ruled_pages()[:3]
BORDERLESS = borderless_pages()[:3]
PAGE_TIMEOUT_S = 120.0


def test_opencv_has_its_contrib_modules_and_both_engines_load() -> None:
    import cv2
    import numpy as np
    from img2table.tables.extractor import TableExtractor
    from rapidocr_onnxruntime import RapidOCR

    # img2table needs the contrib modules (cv2.ximgproc); two OpenCV wheels in one venv
    # overwrite each other's cv2 and lose them.
    assert hasattr(cv2, "ximgproc"), cv2.__file__
    gray = cv2.imdecode(np.frombuffer(RULED[0].data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert gray is not None
    result, _ = RapidOCR(use_cls=False, max_side_len=4096)(gray)
    assert "0.45" in [text for _, text, _ in result or []]
    tables = TableExtractor(img=cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)).extract_tables()
    assert [(table.nb_rows, table.nb_columns) for table in tables] == [(5, 4)]


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ProcessPool]:
    pool = ocr_pool("rapidocr", 1)
    await pool.start(engine_name, 300)
    try:
        yield pool
    finally:
        pool.shutdown()


async def _read(pool: ProcessPool, page: TablePage) -> OcrOutput:
    image_base64 = base64.b64encode(page.data).decode("ascii")
    output: OcrOutput = await pool.run(recognize_page, image_base64, True, timeout=PAGE_TIMEOUT_S)
    return output


async def _accuracy(pool: ProcessPool, pages: list[TablePage]) -> tuple[int, int, list[str]]:
    exact = total = 0
    misses: list[str] = []
    for page in pages:
        output = await _read(pool, page)
        assert output.tables is not None
        found, cells = cell_accuracy(output.tables, page.cells)
        exact += found
        total += cells
        if found < cells:
            misses.append(f"{page.name}: {[table.grid() for table in output.tables]}")
    return exact, total, misses


async def test_ruled_tables_at_200_dpi(pool: ProcessPool) -> None:
    exact, total, misses = await _accuracy(pool, RULED)
    assert exact / total >= 0.95, (exact, total, misses)


async def test_borderless_tables_with_aligned_columns(pool: ProcessPool) -> None:
    exact, total, misses = await _accuracy(pool, BORDERLESS)
    assert exact / total >= 0.80, (exact, total, misses)


async def test_the_tables_bbox_is_in_png_pixels_and_the_text_stays(pool: ProcessPool) -> None:
    output = await _read(pool, RULED[0])
    assert output.tables is not None and len(output.tables) == 1
    # The table is drawn from (160, 160) to (160 + 4 * 320, 160 + 5 * 72) px at 200 DPI.
    assert output.tables[0].bbox == pytest.approx((160, 160, 1440, 520), abs=6)
    assert "1,234" in output.text and "0.45" in output.text
    assert output.boxes


async def test_a_page_that_does_not_ask_gets_no_tables(pool: ProcessPool) -> None:
    image_base64 = base64.b64encode(RULED[0].data).decode("ascii")
    output: OcrOutput = await pool.run(recognize_page, image_base64, timeout=PAGE_TIMEOUT_S)
    assert output.tables is None and "0.45" in output.text

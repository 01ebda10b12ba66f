"""14. Tables: pages/s on one worker process, with cell accuracy beside each figure.

The pages are made here with known cells (tests/support/tables.py): born-digital PDFs written
with PyMuPDF (ruled, borderless, one with a merged cell) and 200 DPI grayscale PNGs drawn with
Pillow (ruled, and borderless with aligned columns); the strings include 0.45, 1,234 and -3.
Each way runs in one spawned process, warmed up on one page first, the ways taking turns page
by page, so a load from elsewhere on the machine weighs on both alike.

- Born-digital: `tables_from_text_layer` (what the render pool runs: img2table's structure on a
  raster of the page, cells filled with the page's own words) against the bare library doing
  the same, img2table's own `PDF` document reading its text layer with pypdfium2; PyMuPDF's
  `find_tables()` + `Table.extract()` is run too, for its accuracy only.
- Scanned: the worker's own pool function, `recognize_page(image, tables=True)` (RapidOCR, then
  img2table filled from its boxes), against `recognize_page(image)`, OCR alone, on the same
  pages: the ratio is what finding the tables costs on top of the OCR a worker does anyway.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tests.support.tables import (
    TablePage,
    borderless_pages,
    born_digital_pages,
    cell_accuracy,
    ruled_pages,
)

from bench.harness.common import log
from bench.harness.plan import Plan, Row
from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.tables.model import Table, from_grid
from ocr_gateway.worker.process import engine_name, ocr_pool, recognize_page

SECTION = 14
DPI = 200
CALL_TIMEOUT_S = 600.0
# (exact cells, cells, seconds) of one way over its pages.
Measured = tuple[int, int, float]


def page_counts(plan: Plan) -> tuple[int, int]:
    """(born-digital pages, pages of each scanned kind), and runs."""
    return (3, 1) if plan.quick else (len(born_digital_pages()), 5)


def runs(plan: Plan) -> int:
    return 1 if plan.quick else 3


def table_rows(plan: Plan) -> list[Row]:
    digital, scanned = page_counts(plan)
    pdfs = f"{digital} generated born-digital PDF pages (ruled, borderless, a merged cell)"
    images = f"{scanned} ruled + {scanned} borderless generated 200 DPI gray PNGs"
    one = "one process"
    return [
        Row("14a", SECTION, "Tables, born-digital: pages/s", f"{pdfs}; {one}", "pages/s"),
        Row(
            "14b",
            SECTION,
            "Tables, born-digital: ours / img2table PDF",
            "pages/s, tables_from_text_layer vs img2table's PDF document on its own text"
            f" layer; {pdfs}",
            "x",
        ),
        Row(
            "14c",
            SECTION,
            "Tables, born-digital: cells exact",
            f"share of known cells read exactly; {pdfs}",
            "x",
            ">=",
            1.0,
        ),
        Row(
            "14d",
            SECTION,
            "Tables, scanned: pages/s, OCR + tables",
            f"recognize_page(tables=True) in the worker's OCR pool; {images}; {one}",
            "pages/s",
        ),
        Row(
            "14e",
            SECTION,
            "Tables, scanned: OCR + tables / OCR alone",
            f"pages/s, recognize_page with and without tables on the same pages; {images}",
            "x",
        ),
        Row(
            "14f",
            SECTION,
            "Tables, scanned ruled: cells exact",
            f"share of known cells read exactly; {scanned} ruled 200 DPI pages",
            "x",
            ">=",
            0.95,
        ),
        Row(
            "14g",
            SECTION,
            "Tables, scanned borderless: cells exact",
            f"share of known cells read exactly; {scanned} borderless 200 DPI pages",
            "x",
            ">=",
            0.80,
        ),
    ]


# ---------------------------------------------------------------- inside the bench process


def _open_page(data: bytes) -> Any:
    import pymupdf

    return pymupdf.open(stream=data, filetype="pdf")


def ours_born_digital(pages: list[TablePage]) -> Measured:
    from ocr_gateway.tables.text_layer import tables_from_text_layer

    exact = total = 0
    seconds = 0.0
    for page in pages:
        with _open_page(page.data) as document:
            started = time.perf_counter()
            found = tables_from_text_layer(document[0], DPI)
            seconds += time.perf_counter() - started
        hit, cells = cell_accuracy(found, page.cells)
        exact, total = exact + hit, total + cells
    return exact, total, seconds


def img2table_born_digital(pages: list[TablePage]) -> Measured:
    from img2table.document import PDF

    exact = total = 0
    seconds = 0.0
    for page in pages:
        started = time.perf_counter()
        extracted = PDF(src=page.data).extract_tables(borderless_tables=True).get(0, [])
        seconds += time.perf_counter() - started
        found = [_from_img2table(table) for table in extracted]
        hit, cells = cell_accuracy(found, page.cells)
        exact, total = exact + hit, total + cells
    return exact, total, seconds


def pymupdf_born_digital(pages: list[TablePage]) -> Measured:
    exact = total = 0
    seconds = 0.0
    for page in pages:
        with _open_page(page.data) as document:
            started = time.perf_counter()
            extracted = [table.extract() for table in document[0].find_tables().tables]
            seconds += time.perf_counter() - started
        found = [
            from_grid((0, 0, 0, 0), [[(object(), cell or "") for cell in row] for row in rows])
            for rows in extracted
        ]
        hit, cells = cell_accuracy(found, page.cells)
        exact, total = exact + hit, total + cells
    return exact, total, seconds


def _from_img2table(table: Any) -> Table:
    grid = [
        [((c.bbox.x1, c.bbox.y1, c.bbox.x2, c.bbox.y2), (c.value or "").strip()) for c in row]
        for row in table.content.values()
    ]
    return from_grid((0, 0, 0, 0), grid)


async def scanned(pool: ProcessPool, pages: list[TablePage], tables: bool) -> Measured:
    """`recognize_page` in the worker's own OCR pool (one process), timed call by call."""
    exact = total = 0
    seconds = 0.0
    for page in pages:
        image_base64 = base64.b64encode(page.data).decode("ascii")
        started = time.perf_counter()
        output = await pool.run(recognize_page, image_base64, tables, timeout=CALL_TIMEOUT_S)
        seconds += time.perf_counter() - started
        if tables:
            hit, cells = cell_accuracy(output.tables or [], page.cells)
            exact, total = exact + hit, total + cells
    return exact, total, seconds


# ---------------------------------------------------------------- the section


async def run(rows: dict[str, Row], plan: Plan) -> None:
    digital_count, scanned_count = page_counts(plan)
    digital = born_digital_pages()[:digital_count]
    ruled = ruled_pages()[:scanned_count]
    borderless = borderless_pages()[:scanned_count]
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    ocr = ocr_pool("rapidocr", 1)
    try:
        await ocr.start(engine_name, CALL_TIMEOUT_S)
        with ProcessPoolExecutor(1, mp_context=context) as pool:

            async def call(fn: Callable[..., Measured], *args: Any) -> Measured:
                return await loop.run_in_executor(pool, fn, *args)

            # Warm-up: imports, models, first-call costs.
            await call(ours_born_digital, digital[:1])
            await call(img2table_born_digital, digital[:1])
            await scanned(ocr, ruled[:1], True)
            pymupdf_exact, pymupdf_total, _ = await call(pymupdf_born_digital, digital)
            for number in range(runs(plan)):
                # The ways take turns page by page, so a load from elsewhere weighs on both.
                ours: Measured = (0, 0, 0.0)
                peer: Measured = (0, 0, 0.0)
                for page in digital:
                    ours = add(ours, await call(ours_born_digital, [page]))
                    peer = add(peer, await call(img2table_born_digital, [page]))
                with_ruled: Measured = (0, 0, 0.0)
                with_borderless: Measured = (0, 0, 0.0)
                alone: Measured = (0, 0, 0.0)
                for page in ruled:
                    with_ruled = add(with_ruled, await scanned(ocr, [page], True))
                    alone = add(alone, await scanned(ocr, [page], False))
                for page in borderless:
                    with_borderless = add(with_borderless, await scanned(ocr, [page], True))
                    alone = add(alone, await scanned(ocr, [page], False))
                record(rows, digital, ours, peer, (pymupdf_exact, pymupdf_total))
                record_scanned(rows, len(ruled + borderless), with_ruled, with_borderless, alone)
                log(
                    f"tables run {number + 1}: born-digital {rows['14a'].values[-1]:.2f} pages/s"
                    f" ({rows['14c'].detail}), img2table PDF: {rows['14b'].detail};"
                    f" scanned {rows['14d'].values[-1]:.2f} pages/s (ruled"
                    f" {rows['14f'].detail}, borderless {rows['14g'].detail}),"
                    f" {rows['14e'].detail}"
                )
    finally:
        ocr.shutdown()


def add(total: Measured, more: Measured) -> Measured:
    return total[0] + more[0], total[1] + more[1], total[2] + more[2]


def record(
    rows: dict[str, Row],
    digital: list[TablePage],
    ours: Measured,
    peer: Measured,
    pymupdf: tuple[int, int],
) -> None:
    rows["14a"].values.append(len(digital) / ours[2])
    rows["14b"].values.append(peer[2] / ours[2])
    rows["14c"].values.append(ours[0] / ours[1])
    rows["14b"].detail = (
        f"{peer[0]}/{peer[1]} cells exact, {len(digital) / peer[2]:.2f} pages/s;"
        f" PyMuPDF find_tables + extract: {pymupdf[0]}/{pymupdf[1]} cells exact"
    )
    rows["14c"].detail = f"{ours[0]}/{ours[1]} cells"


def record_scanned(
    rows: dict[str, Row], pages: int, ruled: Measured, borderless: Measured, alone: Measured
) -> None:
    both = ruled[2] + borderless[2]
    rows["14d"].values.append(pages / both)
    rows["14e"].values.append(alone[2] / both)
    rows["14f"].values.append(ruled[0] / ruled[1])
    rows["14g"].values.append(borderless[0] / borderless[1])
    rows["14e"].detail = f"OCR alone: {pages / alone[2]:.2f} pages/s"
    rows["14f"].detail = f"{ruled[0]}/{ruled[1]} cells"
    rows["14g"].detail = f"{borderless[0]}/{borderless[1]} cells"

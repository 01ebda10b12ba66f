"""15. Tables to XLSX: the two things `/convert/batch` adds around the pages, each against the
bare library doing the same work on the same input, in one spawned process, taking turns run
by run, each the best of TRIES tries. Times are the process's CPU time (`process_time`): the
machine is shared, and the work is CPU-bound, so wall time would mostly measure the others.

- Merge: `convert/merge.merge_files` (what the inspect pool runs for a batch: page sizes held
  to the limits, PDF pages copied, each image frame converted and placed on a page of its own
  pixels) against a bare PyMuPDF loop doing the copy and placing the PNGs as they are, on the
  GeoTopo sample (117 pages) and ten 200 DPI table pictures.
- Workbook: `convert/workbook.build_workbook` (what the render pool runs for a download: a
  manifest read, a sheet per table with numbers typed and spans merged, a sheet of text lines
  for a page without one, columns fitted) against bare openpyxl writing the same cells (values,
  number formats, merged ranges, sheets) decided before its clock starts, and saving: the
  ratio is what deciding them costs on top of the library's own work.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from bench.harness.common import log
from bench.harness.plan import Plan, Row

SECTION = 15
SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "GeoTopo-komprimiert.pdf"
DPI = 200
IMAGES = 10
TRIES = 5


def workbook_pages(plan: Plan) -> int:
    return 20 if plan.quick else 200


def runs(plan: Plan) -> int:
    return 1 if plan.quick else 5


def convert_rows(plan: Plan) -> list[Row]:
    batch = f"GeoTopo (117 p) + {IMAGES} table PNGs at {DPI} DPI, one process"
    pages = workbook_pages(plan)
    book = f"{pages} pages: half a 5x4 table each, half 30 text lines; one process"
    return [
        Row("15a", SECTION, "Convert: merge a batch, pages/s", batch, "n"),
        Row(
            "15b",
            SECTION,
            "Convert: merge / bare PyMuPDF",
            f"pages/s, merge_files vs insert_pdf + insert_image of the same files; {batch}",
            "x",
            ">=",
            0.85,
        ),
        Row("15c", SECTION, "Convert: workbook, pages/s", f"build_workbook; {book}", "n"),
        Row(
            "15d",
            SECTION,
            "Convert: workbook / bare openpyxl",
            f"pages/s, build_workbook vs openpyxl writing the same cells, decided beforehand;"
            f" {book}",
            "x",
            ">=",
            0.85,
        ),
    ]


# ---------------------------------------------------------------- inside the spawned process


def prepare(folder: str, pages: int) -> tuple[list[tuple[str, str]], str]:
    """The batch's files and the workbook's manifest, written under `folder`."""
    from tests.support.tables import TABLES, draw_table_png

    files = [(str(SAMPLE), "application/pdf")]
    for index in range(IMAGES):
        path = Path(folder) / f"table-{index}.png"
        path.write_bytes(draw_table_png(TABLES[index % len(TABLES)], ruled=bool(index % 2)))
        files.append((str(path), "image/png"))
    manifest = Path(folder) / "pages.jsonl"
    with manifest.open("wb") as out:
        for number in range(1, pages + 1):
            cells = TABLES[number % len(TABLES)]
            rows = [[{"text": text, "row_span": 1, "col_span": 1} for text in row] for row in cells]
            tables = [{"bbox": [0, 0, 1, 1], "rows": rows}] if number % 2 else []
            page = {
                "page_number": number,
                "status": "done",
                "text": "\n".join(f"line {n} of page {number}" for n in range(30)),
                "tables": tables,
                "error": None,
            }
            out.write(orjson.dumps(page) + b"\n")
    return files, str(manifest)


def ours_merge(files: list[tuple[str, str]], target: str) -> tuple[int, float]:
    from ocr_gateway.convert.merge import merge_files
    from ocr_gateway.rendering.inspection import Limits
    from ocr_gateway.rendering.mupdf import RenderOptions

    limits = Limits(max_pages=10_000, max_page_pixels=100_000_000, max_document_pixels=10**12)
    options = RenderOptions(dpi=DPI, grayscale=True, max_page_pixels=100_000_000)
    started = time.process_time()
    merged = merge_files(files, target, limits, options)
    seconds = time.process_time() - started
    assert merged.inspection.problem is None, merged.inspection.detail
    return merged.inspection.page_count, seconds


def bare_merge(files: list[tuple[str, str]], target: str) -> tuple[int, float]:
    from ocr_gateway.rendering.mupdf import pymupdf

    started = time.process_time()
    with pymupdf.open() as merged:
        for path, media_type in files:
            if media_type == "application/pdf":
                with pymupdf.open(path) as source:
                    merged.insert_pdf(source)
                continue
            with pymupdf.open(path) as image:
                box = image[0].rect
            page = merged.new_page(width=box.width * 72 / DPI, height=box.height * 72 / DPI)
            page.insert_image(page.rect, filename=path)
        count = merged.page_count
        merged.save(target, garbage=1, deflate=True)
    return count, time.process_time() - started


def ours_workbook(manifest: str, pages: int, target: str) -> float:
    from ocr_gateway.convert.workbook import build_workbook

    files = [{"index": 0, "filename": "report.pdf", "total_page_number": pages}]
    gc.collect()
    started = time.process_time()
    build_workbook(manifest, files, target)
    return time.process_time() - started


def bare_workbook(manifest: str, target: str) -> float:
    """openpyxl writing the very cells the workbook holds (values, number formats, merged
    ranges, sheet names), decided before the clock starts: the library's own cost."""
    from openpyxl import Workbook

    from ocr_gateway.convert.workbook import cell_value
    from ocr_gateway.tables.model import Table

    sheets: list[tuple[str, list[tuple[int, int, Any, str | None]], list[tuple[int, ...]]]] = []
    for line in Path(manifest).read_bytes().splitlines():
        page = orjson.loads(line)
        cells: list[tuple[int, int, Any, str | None]] = []
        merges: list[tuple[int, ...]] = []
        if page["tables"]:
            table = Table.model_validate(page["tables"][0])
            for row, column, cell in table.positions():
                value, number_format = cell_value(cell.text)
                cells.append((row + 1, column + 1, value, number_format))
                if cell.row_span > 1 or cell.col_span > 1:
                    merges.append(
                        (row + 1, column + 1, row + cell.row_span, column + cell.col_span)
                    )
        else:
            lines = page["text"].splitlines()
            cells = [(number, 1, text, None) for number, text in enumerate(lines, start=1)]
        sheets.append((f"report p{page['page_number']}", cells, merges))

    gc.collect()
    started = time.process_time()
    book = Workbook()
    if book.active is not None:
        book.remove(book.active)
    for title, cells, merges in sheets:
        sheet = book.create_sheet(title)
        for row, column, value, number_format in cells:
            written = sheet.cell(row=row, column=column, value=value)
            if number_format is not None:
                written.number_format = number_format
        for top, left, bottom, right in merges:
            sheet.merge_cells(start_row=top, start_column=left, end_row=bottom, end_column=right)
    book.save(target)
    return time.process_time() - started


# ---------------------------------------------------------------- the section


async def run(rows: dict[str, Row], plan: Plan) -> None:
    pages = workbook_pages(plan)
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="bench-convert-") as folder,
        ProcessPoolExecutor(1, mp_context=context) as pool,
    ):

        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        files, manifest = await call(prepare, folder, pages)
        merged, book = str(Path(folder) / "merged.pdf"), str(Path(folder) / "tables.xlsx")
        # Warm-up: imports and first-call costs of both sides.
        await call(ours_merge, files, merged)
        await call(bare_merge, files, merged)
        await call(ours_workbook, manifest, pages, book)
        await call(bare_workbook, manifest, book)
        for number in range(runs(plan)):
            # Each side TRIES times in turn within a run, its best time kept: the machine is
            # shared, and the best of a few is the figure least touched by another's load.
            merges: list[tuple[int, float]] = []
            bare_merges: list[tuple[int, float]] = []
            books: list[float] = []
            bare_books: list[float] = []
            for _ in range(TRIES):
                merges.append(await call(ours_merge, files, merged))
                bare_merges.append(await call(bare_merge, files, merged))
                books.append(await call(ours_workbook, manifest, pages, book))
                bare_books.append(await call(bare_workbook, manifest, book))
            count, ours_s = min(merges, key=lambda measured: measured[1])
            bare_count, bare_s = min(bare_merges, key=lambda measured: measured[1])
            assert count == bare_count, (count, bare_count)
            ours_book, bare_book = min(books), min(bare_books)
            rows["15a"].values.append(count / ours_s)
            rows["15b"].values.append(bare_s / ours_s)
            rows["15c"].values.append(pages / ours_book)
            rows["15d"].values.append(bare_book / ours_book)
            rows["15b"].detail = f"bare: {bare_count / bare_s:.0f} pages/s"
            rows["15d"].detail = f"bare: {pages / bare_book:.0f} pages/s"
            log(
                f"convert run {number + 1}: merge {count / ours_s:.0f} pages/s"
                f" ({bare_s / ours_s:.2f}x bare), workbook {pages / ours_book:.0f} pages/s"
                f" ({bare_book / ours_book:.2f}x bare)"
            )

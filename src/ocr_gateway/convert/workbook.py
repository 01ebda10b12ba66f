"""The workbook of a `/convert/batch` job, built with openpyxl in a render pool process.

Every table found on a page becomes a sheet named after its file, its page in that file and its
number on the page (`invoice p2 t1`); a done page without a table becomes a sheet of its text
lines, one a row (`invoice p3 text`), and a page that failed a sheet saying so, so that every
page of the batch is in the workbook. Sheet names follow Excel's rules: at most 31 characters,
none of `[]:*?/\\`, no apostrophe at either end, unique without regard to case.

A table's `rows` are read as HTML reads them (`tables.model.Table.positions`): each row lists
the cells that start in it, left to right, and a cell spanning rows or columns covers places
that the rows below skip. A span becomes a merged range holding the cell's text in its top-left
cell.

A cell whose whole text is plainly a number is written as a number (`cell_value`), shown as it
was written; everything else, line texts included, is written as text, never as a formula.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ocr_gateway.tables.model import Table

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_TITLE_CHARS = 31
FORBIDDEN_TITLE_CHARS = re.compile(r"[\[\]:*?/\\]")
# Excel keeps at most 32,767 characters in a cell, and 15 significant digits in a number.
MAX_CELL_CHARS = 32_767
MAX_NUMBER_DIGITS = 15
MAX_COLUMN_WIDTH = 60
WRAPPED = Alignment(wrap_text=True, vertical="top")
# A number as people write it: an optional minus (ASCII or U+2212), an integer without leading
# zeros, either plain (1234) or grouped by commas in threes (1,234), an optional decimal part
# after a point, an optional percent sign.
NUMBER = re.compile(
    r"(?P<sign>[-\u2212])?"
    r"(?P<whole>0|[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d*)"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?P<percent>%)?"
)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file of the batch, as `jobs.source_files` lists it."""

    index: int
    filename: str
    total_page_number: int


@dataclass(frozen=True, slots=True)
class PagePlace:
    """Where a page of the job comes from: its file and its 1-based page in that file."""

    file: SourceFile
    page: int


def place_pages(files: Iterable[SourceFile]) -> Iterator[PagePlace]:
    """Each page of the job in order, as its file's page: the job's pages are the files'
    pages one file after the other."""
    for file in files:
        for page in range(1, file.total_page_number + 1):
            yield PagePlace(file, page)


def cell_value(text: str) -> tuple[str | int | float, str | None]:
    """The value to write for a cell's text, and its number format (None: General).

    Plainly a number: `0.45`, `-3`, `1234`, `1,234` (commas grouping thousands, as in English),
    `12.50` (shown with its two decimals), `45%` (0.45 shown as a percentage). Text: anything
    with a leading zero (`007`), a plus sign, spaces or other characters inside (`+49 30 1234`,
    `1 234`, `$3`, `(3)`), a comma not grouping thousands (`1,5`), an exponent (`1e5`), or
    more than 15 digits (an account or card number Excel would round).
    """
    stripped = text.strip()
    match = NUMBER.fullmatch(stripped)
    if match is None:
        return text, None
    whole = match["whole"].replace(",", "")
    fraction = match["fraction"] or ""
    if len(whole) + len(fraction) > MAX_NUMBER_DIGITS:
        return text, None
    grouped = "," in match["whole"]
    number = Decimal(f"{whole}.{fraction}" if fraction else whole)
    if match["sign"]:
        number = -number
    decimals = "." + "0" * len(fraction) if fraction else ""
    if match["percent"]:
        return float(number / 100), f"0{decimals}%"
    value: int | float = float(number) if fraction else int(number)
    if grouped:
        return value, f"#,##0{decimals}"
    return value, f"0{decimals}" if fraction else None


def clean_text(text: str) -> str:
    """Text a cell can hold: without the control characters XML forbids, within Excel's
    limit."""
    return ILLEGAL_CHARACTERS_RE.sub("", text)[:MAX_CELL_CHARS]


class SheetTitles:
    """Sheet names within Excel's rules, each unique in its workbook (Excel ignores case)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def make(self, stem: str, suffix: str) -> str:
        """`<stem> <suffix>`, the stem cut to fit in 31 characters; `<stem>~2 <suffix>`,
        `~3`, ... when the name is taken."""
        base = _clean_stem(stem)
        for attempt in range(1, len(self._taken) + 2):
            mark = f"~{attempt}" if attempt > 1 else ""
            room = MAX_TITLE_CHARS - len(suffix) - len(mark) - 1
            title = f"{base[:room].rstrip(chr(39) + ' ')}{mark} {suffix}".strip()
            if title.lower() not in self._taken:
                self._taken.add(title.lower())
                return title
        raise AssertionError("a free sheet name is always found")  # pragma: no cover


def _clean_stem(filename: str) -> str:
    """A file's name without its extension or the characters a sheet name may not hold."""
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    stem = FORBIDDEN_TITLE_CHARS.sub("_", stem)
    stem = " ".join(ILLEGAL_CHARACTERS_RE.sub("", stem).split())
    return stem.strip("'") or "file"


class SheetWriter:
    """Writes a sheet's cells and keeps its columns' widths as it goes, so that the columns
    are fitted to their longest text (within MAX_COLUMN_WIDTH) without reading the sheet
    again."""

    def __init__(self, sheet: Worksheet) -> None:
        self.sheet = sheet
        self._widths: dict[int, int] = {}

    def text(self, row: int, column: int, text: str) -> None:
        """A string cell; never read as a formula, whatever it starts with."""
        cell = self.sheet.cell(row=row, column=column, value=clean_text(text))
        cell.data_type = "s"
        if "\n" in text:  # a cell of several lines shows them all
            cell.alignment = WRAPPED
        self._fit(column, max(len(part) for part in text.split("\n")))

    def number(self, row: int, column: int, value: float, number_format: str | None) -> None:
        cell = self.sheet.cell(row=row, column=column, value=value)
        if number_format is not None:
            cell.number_format = number_format
        self._fit(column, len(str(value)))

    def _fit(self, column: int, width: int) -> None:
        if width > self._widths.get(column, 0):
            self._widths[column] = width

    def fit_columns(self) -> None:
        for column, width in self._widths.items():
            letter = get_column_letter(column)
            self.sheet.column_dimensions[letter].width = min(MAX_COLUMN_WIDTH, width + 2)


def write_table(sheet: Worksheet, table: Table) -> None:
    """The table's cells in their rows and columns; a span becomes a merged range."""
    writer = SheetWriter(sheet)
    for row, column, cell in table.positions():
        top, left = row + 1, column + 1
        if cell.text.strip():
            value, number_format = cell_value(cell.text)
            if isinstance(value, str):
                writer.text(top, left, value)
            else:
                writer.number(top, left, value, number_format)
        if cell.row_span > 1 or cell.col_span > 1:
            sheet.merge_cells(
                start_row=top,
                start_column=left,
                end_row=top + cell.row_span - 1,
                end_column=left + cell.col_span - 1,
            )
    writer.fit_columns()


def write_lines(sheet: Worksheet, lines: Iterable[str]) -> None:
    """One line of text a row, in the first column."""
    writer = SheetWriter(sheet)
    row = 0
    for line in lines:
        if line.strip():
            row += 1
            writer.text(row, 1, line)
    writer.fit_columns()


def fill_workbook(
    workbook: Workbook, pages: Iterable[Mapping[str, Any]], files: list[SourceFile]
) -> int:
    """Add the sheets of the job's `pages` (in page order: `page_number`, `status`, `text`,
    `tables`, `error`) to `workbook`; returns how many were added."""
    places = list(place_pages(files))
    titles = SheetTitles()
    added = 0
    for page in pages:
        number = int(page["page_number"])
        place = places[number - 1] if 0 < number <= len(places) else None
        stem = place.file.filename if place else "page"
        label = f"p{place.page if place else number}"
        tables = page.get("tables") or []
        if page.get("status") == "done" and tables:
            for table_number, table in enumerate(tables, start=1):
                sheet = workbook.create_sheet(titles.make(stem, f"{label} t{table_number}"))
                write_table(sheet, Table.model_validate(table))
                added += 1
            continue
        sheet = workbook.create_sheet(titles.make(stem, f"{label} text"))
        if page.get("status") == "done":
            write_lines(sheet, str(page.get("text") or "").splitlines())
        else:
            reason = page.get("error") or f"the page is {page.get('status')}"
            write_lines(sheet, [f"This page was not read: {reason}"])
        added += 1
    return added


def read_manifest(manifest: Path) -> Iterator[dict[str, Any]]:
    with manifest.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def build_workbook(manifest: str, files: list[dict[str, Any]], target: str) -> int:
    """Write the workbook of the manifest's pages (one JSON page a line) to `target`, through
    a temporary name renamed into place, so `target` is whole or absent; returns its sheets.

    A finished job's workbook is the same whoever builds it, so two processes building it at
    once write the same bytes, and the last rename wins."""
    workbook = Workbook()
    default = workbook.active
    sources = [
        SourceFile(int(f["index"]), str(f["filename"]), int(f["total_page_number"])) for f in files
    ]
    sheets = fill_workbook(workbook, read_manifest(Path(manifest)), sources)
    if sheets and default is not None:
        workbook.remove(default)
    elif default is not None:
        default.title = "empty"
    temporary = Path(target).with_name(f".{Path(target).name}.{os.getpid()}.tmp")
    try:
        workbook.save(temporary)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return sheets

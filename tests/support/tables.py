"""Table pages with known cells, made on the spot: images drawn with Pillow (ruled, or
borderless with aligned columns) and born-digital PDFs written with PyMuPDF (with and without
rules, with a merged cell). Used by the table tests and by bench section 12.

Cell strings include what table readers get wrong: 0.45, 1,234, -3, 1,000.00, +8.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pymupdf
from PIL import Image, ImageDraw, ImageFont

from ocr_gateway.tables.model import Table

# Five tables of 5 rows x 4 columns (20 cells each), different strings in each.
TABLES: list[list[list[str]]] = [
    [
        ["Item", "Qty", "Price", "Delta"],
        ["Apples", "1,234", "0.45", "-3"],
        ["Pears", "17", "12.50", "+8"],
        ["Plums", "905", "3.07", "-0.25"],
        ["Figs", "42", "1,000.00", "0"],
    ],
    [
        ["City", "Code", "Rate", "Change"],
        ["Berlin", "10115", "2.75", "-1"],
        ["Paris", "75001", "0.90", "+12"],
        ["Madrid", "28001", "14.20", "-7"],
        ["Rome", "00118", "6.05", "3"],
    ],
    [
        ["Month", "Sales", "Cost", "Margin"],
        ["January", "2,480", "1,912", "0.23"],
        ["February", "3,105", "2,250", "0.28"],
        ["March", "1,870", "1,990", "-0.06"],
        ["April", "4,012", "2,875", "0.28"],
    ],
    [
        ["Sensor", "Min", "Max", "Mean"],
        ["North", "-12.5", "31.0", "9.8"],
        ["South", "-3.2", "38.4", "17.1"],
        ["East", "-8.0", "29.9", "11.4"],
        ["West", "-6.6", "33.3", "12.9"],
    ],
    [
        ["Account", "Debit", "Credit", "Balance"],
        ["Cash", "5,000", "1,250", "3,750"],
        ["Stock", "820", "0", "820"],
        ["Loans", "0", "12,000", "-12,000"],
        ["Fees", "45", "7.50", "37.50"],
    ],
]

DPI = 200


@dataclass(frozen=True, slots=True)
class TablePage:
    """A page and the cells it must give, row by row (a merged cell: its text, then "" for
    the positions it covers, as `Table.grid()` gives them)."""

    name: str
    data: bytes
    cells: list[list[str]]
    kind: str  # "png" or "pdf"


def draw_table_png(cells: Sequence[Sequence[str]], *, ruled: bool, dpi: int = DPI) -> bytes:
    """A letter-width page image at `dpi` with the table at 11 pt, grayscale PNG."""
    width, height = int(8.5 * dpi), int(4.5 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=round(11 / 72 * dpi))
    draw.text((int(0.8 * dpi), int(0.3 * dpi)), "Table of known cells", fill=0, font=font)
    col_w, row_h = int(1.6 * dpi), int(0.36 * dpi)
    x0, y0 = int(0.8 * dpi), int(0.8 * dpi)
    pad_x, pad_y = int(0.1 * dpi), int(0.09 * dpi)
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            draw.text((x0 + c * col_w + pad_x, y0 + r * row_h + pad_y), text, fill=0, font=font)
    if ruled:
        columns, rows = len(cells[0]), len(cells)
        line = max(2, dpi // 80)
        for r in range(rows + 1):
            y = y0 + r * row_h
            draw.line([(x0, y), (x0 + columns * col_w, y)], fill=0, width=line)
        for c in range(columns + 1):
            x = x0 + c * col_w
            draw.line([(x, y0), (x, y0 + rows * row_h)], fill=0, width=line)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def table_pdf(
    cells: Sequence[Sequence[str]],
    *,
    ruled: bool,
    merge_header: bool = False,
    line_width: float = 1.0,
) -> bytes:
    """A born-digital A4 page: the table's text with `insert_text`, its rules with `draw_line`.
    `merge_header`: the header's last two cells are one cell (the last header string dropped)."""
    document = pymupdf.open()
    page = document.new_page(width=595, height=842)
    page.insert_text((60, 70), "Table of known cells", fontsize=11)
    x0, y0, col_w, row_h = 60, 100, 110, 24
    rows, columns = len(cells), len(cells[0])
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            if merge_header and r == 0 and c == columns - 1:
                continue
            page.insert_text((x0 + c * col_w + 6, y0 + r * row_h + 16), text, fontsize=11)
    if ruled:
        for r in range(rows + 1):
            page.draw_line(
                (x0, y0 + r * row_h), (x0 + columns * col_w, y0 + r * row_h), width=line_width
            )
        for c in range(columns + 1):
            top = y0 + row_h if merge_header and c == columns - 1 else y0
            page.draw_line(
                (x0 + c * col_w, top), (x0 + c * col_w, y0 + rows * row_h), width=line_width
            )
    data: bytes = document.tobytes()
    document.close()
    return data


def expected_cells(
    cells: Sequence[Sequence[str]], *, merge_header: bool = False
) -> list[list[str]]:
    out = [list(row) for row in cells]
    if merge_header:
        out[0][-1] = ""
    return out


def ruled_pages() -> list[TablePage]:
    return [
        TablePage(f"ruled-{i}", draw_table_png(t, ruled=True), expected_cells(t), "png")
        for i, t in enumerate(TABLES)
    ]


def borderless_pages() -> list[TablePage]:
    return [
        TablePage(f"borderless-{i}", draw_table_png(t, ruled=False), expected_cells(t), "png")
        for i, t in enumerate(TABLES)
    ]


def born_digital_pages() -> list[TablePage]:
    pages = []
    for i, t in enumerate(TABLES):
        pages.append(
            TablePage(f"pdf-ruled-{i}", table_pdf(t, ruled=True), expected_cells(t), "pdf")
        )
        pages.append(
            TablePage(f"pdf-borderless-{i}", table_pdf(t, ruled=False), expected_cells(t), "pdf")
        )
    merged = TABLES[0]
    pages.append(
        TablePage(
            "pdf-merged",
            table_pdf(merged, ruled=True, merge_header=True),
            expected_cells(merged, merge_header=True),
            "pdf",
        )
    )
    return pages


def cell_accuracy(found: Sequence[Table], expected: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(exact cells, expected cells): the best-matching table found, compared position by
    position (whitespace runs count as one space)."""
    total = sum(len(row) for row in expected)
    best = 0
    for table in found:
        grid = table.grid()
        exact = 0
        for r, row in enumerate(expected):
            for c, text in enumerate(row):
                if r < len(grid) and c < len(grid[r]) and _norm(grid[r][c]) == _norm(text):
                    exact += 1
        best = max(best, exact)
    return best, total


def _norm(text: str) -> str:
    return " ".join(text.split())

"""The workbook builder, read back with openpyxl: sheet names within Excel's rules, cells in
their rows and columns, spans as merged ranges, numbers as numbers, text never a formula, and a
sheet of text lines for a page without a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openpyxl import load_workbook

from ocr_gateway.convert.workbook import (
    MAX_TITLE_CHARS,
    SheetTitles,
    build_workbook,
    cell_value,
)


def _cell(text: str, row_span: int = 1, col_span: int = 1) -> dict[str, Any]:
    return {"text": text, "row_span": row_span, "col_span": col_span}


def _table(*rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bbox": [0, 0, 100, 100], "rows": list(rows)}


def _build(tmp_path: Path, pages: list[dict[str, Any]], files: list[dict[str, Any]]) -> Path:
    manifest = tmp_path / "pages.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(page) + b"\n" for page in pages))
    target = tmp_path / "tables.xlsx"
    build_workbook(str(manifest), files, str(target))
    return target


def _page(
    number: int, *, tables: list[dict[str, Any]] | None = None, text: str = ""
) -> dict[str, Any]:
    return {"page_number": number, "status": "done", "text": text, "tables": tables, "error": None}


@pytest.mark.parametrize(
    ("text", "value", "number_format"),
    [
        ("0.45", 0.45, "0.00"),
        ("-3", -3, None),
        ("\u22123", -3, None),
        ("1234", 1234, None),
        ("1,234", 1234, "#,##0"),
        ("12,345,678.90", 12345678.9, "#,##0.00"),
        ("12.50", 12.5, "0.00"),
        ("45%", 0.45, "0%"),
        ("-12.5%", -0.125, "0.0%"),
        ("0", 0, None),
        (" 42 ", 42, None),
    ],
)
def test_plain_numbers_become_numbers_shown_as_written(
    text: str, value: float, number_format: str | None
) -> None:
    written, shown = cell_value(text)
    assert not isinstance(written, str)
    assert written == pytest.approx(value)
    assert type(written) is (float if "." in text or "%" in text else int)
    assert shown == number_format


@pytest.mark.parametrize(
    "text",
    [
        "007",
        "+49 30 1234567",
        "030 1234567",
        "555-1234",
        "1 234",
        "1,5",
        "1234,567",
        "$3",
        "(3)",
        "1e5",
        ".5",
        "3.",
        "1234567890123456",
        "4111111111111111",
        "12.3.2024",
        "-",
        "",
        "abc",
    ],
)
def test_what_is_not_plainly_a_number_stays_text(text: str) -> None:
    assert cell_value(text) == (text, None)


def test_sheet_titles_keep_excels_rules() -> None:
    titles = SheetTitles()
    long = titles.make("quarterly report: sales [EU]/*final*?.pdf", "p12 t3")
    assert len(long) <= MAX_TITLE_CHARS and long.endswith(" p12 t3")
    assert not set("[]:*?/\\") & set(long)
    assert long.startswith("quarterly report_ sales")
    first = titles.make("scan.png", "p1 t1")
    second = titles.make("SCAN.png", "p1 t1")
    third = titles.make("scan.jpg", "p1 t1")
    assert first == "scan p1 t1"
    assert second.lower() != first.lower() and third.lower() not in {first.lower(), second.lower()}
    assert (second, third) == ("SCAN~2 p1 t1", "scan~3 p1 t1")
    quoted = titles.make("'quoted'.pdf", "p1 text")
    assert quoted == "quoted p1 text"
    crowded = SheetTitles()
    names = {crowded.make("x" * 40, "p1 t1").lower() for _ in range(30)}
    assert len(names) == 30 and all(len(name) <= MAX_TITLE_CHARS for name in names)


def test_tables_become_sheets_with_merged_spans_and_numbers(tmp_path: Path) -> None:
    invoice = _table(
        [_cell("Item"), _cell("Amounts", col_span=2)],
        [_cell("Total", row_span=2), _cell("0.45"), _cell("1,234")],
        [_cell("-3"), _cell("007")],
    )
    second = _table([_cell('=HYPERLINK("http://x")'), _cell("a\x07b")])
    files = [
        {"index": 0, "filename": "invoice.pdf", "total_page_number": 2},
        {"index": 1, "filename": "shot.png", "total_page_number": 1},
    ]
    pages = [
        _page(1, tables=[invoice, second]),
        _page(2, text="first line\n\n  second line \n"),
        {"page_number": 3, "status": "failed", "text": None, "tables": None, "error": "boom"},
    ]
    book = load_workbook(_build(tmp_path, pages, files))
    assert book.sheetnames == [
        "invoice p1 t1",
        "invoice p1 t2",
        "invoice p2 text",
        "shot p1 text",
    ]
    sheet = book["invoice p1 t1"]
    assert {str(r) for r in sheet.merged_cells.ranges} == {"B1:C1", "A2:A3"}
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [
        ["Item", "Amounts", None],
        ["Total", 0.45, 1234],
        [None, -3, "007"],
    ]
    assert sheet["B2"].data_type == "n" and sheet["B2"].number_format == "0.00"
    assert sheet["C2"].number_format == "#,##0"
    assert sheet["C3"].data_type == "s"
    formula_like = book["invoice p1 t2"]["A1"]
    assert formula_like.value == '=HYPERLINK("http://x")' and formula_like.data_type == "s"
    assert book["invoice p1 t2"]["B1"].value == "ab"
    lines = book["invoice p2 text"]
    assert [row[0].value for row in lines.iter_rows()] == ["first line", "  second line "]
    assert "boom" in str(book["shot p1 text"]["A1"].value)
    # Columns fit their longest text; a cell of several lines wraps.
    assert sheet.column_dimensions["A"].width == len("Total") + 2
    assert lines.column_dimensions["A"].width == len("  second line ") + 2


def test_a_cell_of_several_lines_keeps_them_and_wraps(tmp_path: Path) -> None:
    files = [{"index": 0, "filename": "a.png", "total_page_number": 1}]
    page = _page(1, tables=[_table([_cell("first\nsecond"), _cell("x" * 200)])])
    sheet = load_workbook(_build(tmp_path, [page], files))["a p1 t1"]
    assert sheet["A1"].value == "first\nsecond" and sheet["A1"].alignment.wrap_text
    assert not sheet["B1"].alignment.wrap_text
    assert sheet.column_dimensions["A"].width == len("second") + 2
    assert sheet.column_dimensions["B"].width == 60


def test_a_page_with_an_empty_table_list_gives_its_text(tmp_path: Path) -> None:
    files = [{"index": 0, "filename": "a.png", "total_page_number": 1}]
    book = load_workbook(_build(tmp_path, [_page(1, tables=[], text="only text")], files))
    assert book.sheetnames == ["a p1 text"]
    assert book["a p1 text"]["A1"].value == "only text"


def test_the_target_is_written_whole_and_nothing_else_is_left(tmp_path: Path) -> None:
    files = [{"index": 0, "filename": "a.png", "total_page_number": 1}]
    target = _build(tmp_path, [_page(1, text="x")], files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pages.jsonl", target.name]

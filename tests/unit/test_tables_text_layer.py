"""Born-digital tables read from the PDF's own text layer: every cell exact (target 100%)."""

from __future__ import annotations

import pymupdf
import pytest

from ocr_gateway.tables.text_layer import tables_from_text_layer
from tests.support.tables import (
    TABLES,
    TablePage,
    born_digital_pages,
    cell_accuracy,
    expected_cells,
    table_pdf,
)

PAGES = born_digital_pages()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_cell_of_a_born_digital_table_is_read_exactly(page: TablePage) -> None:
    with pymupdf.open(stream=page.data, filetype="pdf") as document:
        found = tables_from_text_layer(document[0], 200)
    exact, total = cell_accuracy(found, page.cells)
    assert len(found) == 1, [table.grid() for table in found]
    assert exact == total == 20, found[0].grid()


def test_a_merged_header_cell_becomes_one_cell_spanning_two_columns() -> None:
    data = table_pdf(TABLES[0], ruled=True, merge_header=True)
    with pymupdf.open(stream=data, filetype="pdf") as document:
        (table,) = tables_from_text_layer(document[0], 200)
    header = [(cell.text, cell.row_span, cell.col_span) for cell in table.rows[0]]
    assert header == [("Item", 1, 1), ("Qty", 1, 1), ("Price", 1, 2)]
    assert table.grid() == expected_cells(TABLES[0], merge_header=True)


@pytest.mark.parametrize("ruled", [True, False], ids=["ruled", "borderless"])
def test_small_print_and_hairlines_are_read_too(ruled: bool) -> None:
    """The structure is found on a 100 DPI raster: 0.1 pt rules and 6.6 pt text still show."""
    source_data = table_pdf(TABLES[3], ruled=ruled, line_width=0.1)
    with (
        pymupdf.open(stream=source_data, filetype="pdf") as source,
        pymupdf.open() as document,
    ):
        page = document.new_page(width=595, height=842)
        page.show_pdf_page(pymupdf.Rect(0, 0, 595 * 0.6, 842 * 0.6), source, 0)
        found = tables_from_text_layer(page, 200)
    assert cell_accuracy(found, expected_cells(TABLES[3])) == (20, 20), [t.grid() for t in found]


def test_the_bbox_is_in_the_pixels_of_the_page_rendered_at_the_dpi() -> None:
    # The table's rules run from (60, 100) to (500, 220) points.
    data = table_pdf(TABLES[1], ruled=True)
    with pymupdf.open(stream=data, filetype="pdf") as document:
        (at_72,) = tables_from_text_layer(document[0], 72)
        (at_200,) = tables_from_text_layer(document[0], 200)
    assert at_72.bbox == pytest.approx((60, 100, 500, 220), abs=2)
    assert at_200.bbox == pytest.approx(tuple(v * 200 / 72 for v in (60, 100, 500, 220)), abs=4)


def test_a_rotated_page_gives_the_bbox_on_the_rotated_image() -> None:
    data = table_pdf(TABLES[2], ruled=True)
    with pymupdf.open(stream=data, filetype="pdf") as document:
        page = document[0]
        page.set_rotation(90)
        found = tables_from_text_layer(page, 72)
        pixmap = page.get_pixmap(dpi=72)
    # Rotated 90° clockwise, the 595 x 842 page renders 842 x 595 and a point (x, y) lands
    # on (842 - y, x): the table's rules, x 60-500 and y 100-220, become x 622-742, y 60-500.
    assert (pixmap.width, pixmap.height) == (842, 595)
    assert found, "no table found on the rotated page"
    assert found[0].bbox == pytest.approx((622, 60, 742, 500), abs=3)


def test_pages_without_a_table_give_none() -> None:
    with pymupdf.open() as document:
        empty = document.new_page()
        assert tables_from_text_layer(empty, 200) == []
        prose = document.new_page()
        prose.insert_textbox(
            pymupdf.Rect(72, 72, 520, 400),
            "A page of running text with no table on it. " * 12,
            fontsize=11,
        )
        assert tables_from_text_layer(prose, 200) == []

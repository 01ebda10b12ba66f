"""Unit tests of the table shape and of the `tables` fields of the page and result messages."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest
from pydantic import ValidationError

from ocr_gateway.messaging.contracts import PageMessage, ResultMessage, encode_page_message
from ocr_gateway.tables.model import Table, TableCell, from_grid

JOB = uuid.UUID("0b0e8f4e-5c1a-4f7e-9d55-3a3f1c2b7e01")


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("png", [b"\x89PNG\r\n\x1a\n", b"\xfb\xff\xbf" * 50, b"x" * 1001])
def test_a_page_asking_for_tables_is_the_models_json_byte_for_byte(
    png: bytes, tables: bool
) -> None:
    fast = encode_page_message(JOB, 3, png, tables=tables)
    image_base64 = base64.b64encode(png).decode("ascii")
    model = PageMessage(job_id=JOB, page_number=3, image_base64=image_base64, tables=tables)
    assert fast == model.model_dump_json().encode()
    expected = {"job_id": str(JOB), "page_number": 3, "image_base64": image_base64}
    if tables:
        expected["tables"] = True
    assert fast == orjson.dumps(expected)
    assert PageMessage.model_validate_json(fast) == model


def test_a_page_without_the_field_asks_for_no_tables() -> None:
    body = orjson.dumps({"job_id": str(JOB), "page_number": 1, "image_base64": "eA=="})
    assert PageMessage.model_validate_json(body).tables is False
    assert encode_page_message(JOB, 1, b"x") == encode_page_message(JOB, 1, b"x", tables=False)
    assert b"tables" not in encode_page_message(JOB, 1, b"x")


def test_a_result_carries_tables_and_leaves_them_out_when_not_asked() -> None:
    page = PageMessage(job_id=JOB, page_number=2, image_base64="eA==", tables=True)
    table = Table(
        bbox=(10, 20, 300, 120),
        rows=[[TableCell(text="Item", col_span=2)], [TableCell(text="0.45"), TableCell()]],
    )
    done = ResultMessage.done(page, "Item\n0.45", [], [table])
    body = orjson.loads(done.encode())
    assert body["tables"] == [
        {
            "bbox": [10.0, 20.0, 300.0, 120.0],
            "rows": [
                [{"text": "Item", "row_span": 1, "col_span": 2}],
                [
                    {"text": "0.45", "row_span": 1, "col_span": 1},
                    {"text": "", "row_span": 1, "col_span": 1},
                ],
            ],
        }
    ]
    assert ResultMessage.model_validate_json(done.encode()) == done
    # Asked, none found: an empty list, kept. Not asked: no field at all.
    assert orjson.loads(ResultMessage.done(page, "", [], []).encode())["tables"] == []
    assert "tables" not in orjson.loads(ResultMessage.done(page, "", []).encode())


def test_a_result_with_malformed_tables_is_refused() -> None:
    base = {"job_id": str(JOB), "page_number": 1, "status": "done", "text": ""}
    malformed: list[list[object]] = [
        [{"rows": []}],
        [{"bbox": [0, 0, 1, 1], "rows": [[{"col_span": 0}]]}],
        [3],
    ]
    for tables in malformed:
        with pytest.raises(ValidationError):
            ResultMessage.model_validate_json(orjson.dumps({**base, "tables": tables}))


def test_spans_from_a_grid_and_back() -> None:
    # A B B      "B" spans two columns; "C" two rows; the rest single.
    # C D E
    # C F G
    grid = [
        [("a", "A"), ("b", "B"), ("b", "B")],
        [("c", "C"), ("d", "D"), ("e", "E")],
        [("c", "C"), ("f", "F"), ("g", "G")],
    ]
    table = from_grid((0.04, 1, 2, 3.06), grid)
    assert table.bbox == (0.0, 1.0, 2.0, 3.1)
    assert [[(c.text, c.row_span, c.col_span) for c in row] for row in table.rows] == [
        [("A", 1, 1), ("B", 1, 2)],
        [("C", 2, 1), ("D", 1, 1), ("E", 1, 1)],
        [("F", 1, 1), ("G", 1, 1)],
    ]
    assert [(r, c, cell.text) for r, c, cell in table.positions()] == [
        (0, 0, "A"),
        (0, 1, "B"),
        (1, 0, "C"),
        (1, 1, "D"),
        (1, 2, "E"),
        (2, 1, "F"),
        (2, 2, "G"),
    ]
    assert table.grid() == [["A", "B", ""], ["C", "D", "E"], ["", "F", "G"]]


def test_a_block_spanning_rows_and_columns() -> None:
    grid = [
        [("x", "X"), ("x", "X"), ("y", "Y")],
        [("x", "X"), ("x", "X"), ("z", "Z")],
    ]
    table = from_grid((0, 0, 1, 1), grid)
    assert [[(c.text, c.row_span, c.col_span) for c in row] for row in table.rows] == [
        [("X", 2, 2), ("Y", 1, 1)],
        [("Z", 1, 1)],
    ]
    assert table.grid() == [["X", "", "Y"], ["", "", "Z"]]
    assert Table(bbox=(0, 0, 0, 0), rows=[]).grid() == []

"""Reading order of recognised lines: blocks top to bottom, columns left to right."""

from __future__ import annotations

from ocr_gateway.worker.layout import Box, reading_order, to_output


def line(x0: float, y0: float, width: float, text: str) -> Box:
    return Box(x0, y0, x0 + width, y0 + 20, text, 0.9)


def texts(boxes: list[Box]) -> list[str]:
    return [" ".join(box.text for box in row) for row in reading_order(boxes)]


def test_reading_order_reads_a_title_then_each_column_top_to_bottom() -> None:
    title = line(300, 10, 400, "Title")
    left = [line(50, 100 + 25 * row, 440, f"L{row}") for row in range(6)]
    right = [line(520, 102 + 25 * row, 440, f"R{row}") for row in range(6)]
    # The detector merged one left line with its right neighbour across the gap.
    merged = line(50, 250, 910, "L6 R6")
    footer = line(50, 330, 910, "Footer")
    shuffled = [right[3], footer, left[2], merged, title, *right[:3], *left[3:], *right[4:]]
    shuffled += left[:2]

    assert texts(shuffled) == [
        "Title",
        *(f"L{row}" for row in range(6)),
        "L6 R6",
        *(f"R{row}" for row in range(6)),
        "Footer",
    ]


def test_words_on_one_line_are_read_left_to_right() -> None:
    words = [
        Box(300, 12, 360, 30, "three"),
        Box(10, 10, 80, 30, "one"),
        Box(100, 8, 200, 31, "two"),
    ]
    below = Box(10, 50, 90, 70, "next")
    output = to_output([below, *words])
    assert output.text == "one two three\nnext"
    assert [box["text"] for box in output.boxes] == ["one", "two", "three", "next"]
    assert output.boxes[0] == {"bbox": [10.0, 10.0, 80.0, 30.0], "text": "one", "confidence": None}


def test_list_numbers_are_read_with_their_items() -> None:
    """A narrow column of keys beside wide lines is not a column of text: each key is read on
    its item's line."""
    rows = []
    for row in range(6):
        rows += [
            line(50, 100 + 25 * row, 30, f"{row}."),
            line(120, 100 + 25 * row, 800, f"item {row}"),
        ]
    assert texts(rows[::-1]) == [f"{row}. item {row}" for row in range(6)]


def test_two_lines_each_side_are_too_few_for_columns() -> None:
    left = [line(50, 100 + 25 * row, 440, f"L{row}") for row in range(2)]
    right = [line(520, 100 + 25 * row, 440, f"R{row}") for row in range(2)]
    assert texts([*right, *left]) == ["L0 R0", "L1 R1"]


def test_nothing_in_nothing_out_and_blank_boxes_are_dropped() -> None:
    assert reading_order([]) == []
    output = to_output([Box(0, 0, 10, 10, "  "), Box(0, 20, 10, 30, " word ", 0.98765)])
    assert output.text == "word"
    assert output.boxes == [
        {"bbox": [0.0, 20.0, 10.0, 30.0], "text": " word ", "confidence": 0.9877}
    ]
    assert to_output([]).text == ""


def test_a_degenerate_box_has_a_height_and_width_of_at_least_one() -> None:
    flat = Box(5, 5, 5, 5, "dot")
    assert (flat.width, flat.height) == (1.0, 1.0)
    assert texts([flat]) == ["dot"]

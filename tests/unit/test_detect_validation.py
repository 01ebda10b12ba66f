"""A PATCH of the boxes, checked against the job's pages: every refusal names its field."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.detect import MAX_BOXES_PER_PAGE
from ocr_gateway.detect.schemas import DetectBox, DetectPage, DetectResult
from ocr_gateway.detect.validation import (
    corners,
    parse_patch,
    path_of,
    quad_area,
    validate_patch,
)

JOB = uuid.UUID(int=7)
WIDTH, HEIGHT = 200, 100
STORED = DetectResult(
    job_id=JOB,
    version=3,
    pages=[
        DetectPage(
            page_index=0,
            width=WIDTH,
            height=HEIGHT,
            boxes=[DetectBox(id="b1", points=[[1, 1], [9, 1], [9, 9], [1, 9]], score=0.9)],
        ),
        DetectPage(page_index=1, width=WIDTH, height=HEIGHT, boxes=[]),
    ],
)


def patch(*pages: dict[str, Any], job_id: uuid.UUID = JOB) -> bytes:
    return orjson.dumps({"job_id": str(job_id), "pages": list(pages)})


def page(
    index: int = 0, boxes: list[dict[str, Any]] | None = None, **changes: Any
) -> dict[str, Any]:
    return {
        "page_index": index,
        "width": WIDTH,
        "height": HEIGHT,
        "boxes": boxes if boxes is not None else [{"points": [10, 10, 50, 30]}],
        **changes,
    }


def refused(raw: bytes) -> str:
    with pytest.raises(InvalidField) as caught:
        validate_patch(JOB, parse_patch(raw), STORED)
    assert caught.value.status_code == 422
    path = caught.value.fields["path"]
    assert caught.value.detail.startswith(f"{path}: ")
    return str(path)


def test_a_box_of_four_numbers_becomes_its_four_corners_clockwise() -> None:
    assert corners([10, 20, 30, 40], "p") == [[10, 20], [30, 20], [30, 40], [10, 40]]
    assert corners([[1, 2], [3, 2], [3, 4], [1, 4]], "p") == [[1, 2], [3, 2], [3, 4], [1, 4]]
    assert quad_area([[0, 0], [4, 0], [4, 3], [0, 3]]) == 12


def test_paths_are_spelled_as_the_body_spells_them() -> None:
    assert path_of(("pages", 0, "boxes", 3, "points")) == "pages[0].boxes[3].points"
    assert path_of(()) == "body"


def test_a_good_patch_replaces_every_page_and_names_the_boxes_drawn_by_hand() -> None:
    boxes: list[dict[str, Any]] = [
        {"id": "hand-1", "points": [0, 0, 5, 5]},
        {"points": [[10, 10], [60, 12], [60, 30], [10, 28]]},
        {"id": "b1", "points": [1, 1, 9, 9], "score": 0.5},
        {"points": [WIDTH - 10, HEIGHT - 10, WIDTH, HEIGHT]},
    ]
    pages = validate_patch(JOB, parse_patch(patch(page(0, boxes))), STORED)
    assert [p.page_index for p in pages] == [0, 1]
    assert [box.id for box in pages[0].boxes] == ["hand-1", "hand-2", "b1", "hand-3"]
    assert pages[0].boxes[2].score == 0.5 and pages[0].boxes[1].score is None
    assert pages[1].boxes == []  # a page not listed keeps no boxes


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (patch(page(index=2)), "pages[0].page_index"),
        (patch(page(index=-1)), "pages[0].page_index"),
        (patch(page(), page()), "pages[1].page_index"),
        (patch(page(width=WIDTH + 1)), "pages[0].width"),
        (patch(page(1, height=HEIGHT * 2)), "pages[0].height"),
        (patch(page(boxes=[{"points": [0, 0, WIDTH + 0.5, 10]}])), "pages[0].boxes[0].points"),
        (
            patch(page(boxes=[{"points": [[-1, 0], [5, 0], [5, 5], [0, 5]]}])),
            "pages[0].boxes[0].points",
        ),
        (patch(page(boxes=[{"points": [10, 10, 10, 20]}])), "pages[0].boxes[0].points"),
        (patch(page(boxes=[{"points": [10, 20, 30, 10]}])), "pages[0].boxes[0].points"),
        (
            patch(page(boxes=[{"points": [[1, 1], [50, 1], [50, 1], [1, 1]]}])),
            "pages[0].boxes[0].points",
        ),
        (
            patch(page(boxes=[{"points": [[1, 1], [50, 50], [99, 99], [20, 20]]}])),
            "pages[0].boxes[0].points",
        ),
        (patch(page(boxes=[{"points": [1, 2, 3]}])), "pages[0].boxes[0].points"),
        (patch(page(boxes=[{"points": [[1, 1], [2, 2], [3, 3]]}])), "pages[0].boxes[0].points"),
        (
            patch(page(boxes=[{"points": [[1, "a"], [2, 2], [3, 3], [4, 4]]}])),
            "pages[0].boxes[0].points",
        ),
        (patch(page(boxes=[{"points": [True, 1, 5, 5]}])), "pages[0].boxes[0].points"),
        (patch(page(boxes=[{"id": "x"}])), "pages[0].boxes[0].points"),
        (patch(page(boxes=[{"id": "", "points": [1, 1, 5, 5]}])), "pages[0].boxes[0].id"),
        (
            patch(
                page(
                    boxes=[{"id": "a", "points": [1, 1, 5, 5]}, {"id": "a", "points": [6, 6, 9, 9]}]
                )
            ),
            "pages[0].boxes[1].id",
        ),
        (
            patch(page(boxes=[{"points": [1, 1, 5, 5]}] * (MAX_BOXES_PER_PAGE + 1))),
            "pages[0].boxes",
        ),
        (patch(page(), job_id=uuid.UUID(int=8)), "job_id"),
        (b'{"job_id": "' + str(JOB).encode() + b'"}', "pages"),
        (b"[]", "body"),
    ],
)
def test_each_bad_field_is_named_by_its_path(body: bytes, path: str) -> None:
    assert refused(body) == path


def test_exactly_the_most_boxes_a_page_may_hold_pass() -> None:
    boxes = [{"points": [1, 1, 5, 5]}] * MAX_BOXES_PER_PAGE
    (first, _) = validate_patch(JOB, parse_patch(patch(page(boxes=boxes))), STORED)
    assert len(first.boxes) == MAX_BOXES_PER_PAGE
    assert len({box.id for box in first.boxes}) == MAX_BOXES_PER_PAGE

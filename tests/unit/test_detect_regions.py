"""The `detect` and `recognize` tasks: their page messages (byte for byte the model's JSON,
and an `ocr` page unchanged), and the worker's answers in the order and ids asked."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import ValidationError

from ocr_gateway.messaging.contracts import (
    PageMessage,
    RegionBox,
    ResultMessage,
    TextBox,
    encode_page_message,
)
from ocr_gateway.worker.engine import DetectedRegions
from ocr_gateway.worker.regions import (
    RegionEngine,
    RegionsUnsupported,
    detected_output,
    recognized_output,
    run_region_task,
)

JOB = uuid.UUID("5f0c8a3e-1d2b-4c5d-8e9f-0a1b2c3d4e5f")
PNG = b"\x89PNG fake"
QUAD = [[10.0, 10.0], [90.0, 12.0], [90.0, 30.0], [10.0, 28.0]]


def test_an_ocr_page_is_byte_for_byte_what_it_was_and_has_no_task() -> None:
    body = encode_page_message(JOB, 3, PNG)
    assert b"task" not in body and b"boxes" not in body
    assert body == encode_page_message(JOB, 3, PNG, task="ocr")
    assert PageMessage.model_validate_json(body).task == "ocr"


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("by_url", [False, True])
def test_detect_and_recognize_bodies_are_the_models_own_json(tables: bool, by_url: bool) -> None:
    image: dict[str, Any] = (
        {"image_url": "https://s3.example/p.png?sig=a%2Fb"} if by_url else {"png": PNG}
    )
    boxes = [
        RegionBox(id="b1", points=QUAD, score=0.93),
        RegionBox(id="hand-1", points=[[0, 0], [5, 0], [5, 5], [0, 5]]),
    ]
    for task, asked in (("detect", None), ("recognize", boxes), ("recognize", [])):
        body = encode_page_message(JOB, 2, tables=tables, task=task, boxes=asked, **image)  # type: ignore[arg-type]
        message = PageMessage.model_validate_json(body)
        assert message.model_dump_json().encode() == body
        assert message.task == task and message.tables == tables
        assert message.boxes == asked


def test_a_recognize_page_carries_boxes_and_no_other_does() -> None:
    with pytest.raises(ValueError, match="boxes"):
        encode_page_message(JOB, 1, PNG, task="recognize")
    with pytest.raises(ValueError, match="boxes"):
        encode_page_message(JOB, 1, PNG, task="detect", boxes=[])
    with pytest.raises(ValidationError):
        PageMessage.model_validate(
            {"job_id": JOB, "page_number": 1, "image_base64": "eA==", "task": "recognize"}
        )
    with pytest.raises(ValidationError):
        PageMessage.model_validate(
            {"job_id": JOB, "page_number": 1, "image_base64": "eA==", "task": "translate"}
        )


def test_a_detect_answer_has_ids_corners_scores_and_no_text() -> None:
    output = detected_output(
        DetectedRegions(width=100, height=50, boxes=[(QUAD, 0.912345), (QUAD, None)])
    )
    assert output.text == ""
    assert [box["id"] for box in output.boxes] == ["b1", "b2"]
    assert output.boxes[0]["points"] == QUAD and output.boxes[0]["bbox"] == [10, 10, 90, 30]
    assert output.boxes[0]["score"] == 0.9123 and output.boxes[1]["score"] is None
    page = PageMessage(job_id=JOB, page_number=1, image_base64="eA==", task="detect")
    result = ResultMessage.done(page, output.text, output.boxes)
    assert result.task == "detect"
    again = ResultMessage.model_validate_json(result.encode())
    assert again.boxes is not None and again.boxes[1].id == "b2"


def test_full_ocr_boxes_keep_their_shape_in_results() -> None:
    box = TextBox(bbox=(1, 2, 3, 4), text="x", confidence=None)
    assert box.model_dump() == {"bbox": (1, 2, 3, 4), "text": "x", "confidence": None}
    page = PageMessage(job_id=JOB, page_number=1, image_base64="eA==")
    assert b"task" not in ResultMessage.done(page, "x", [box.model_dump()]).encode()


def test_a_recognize_answer_keeps_the_order_and_ids_asked_and_reads_the_page_in_order() -> None:
    asked = [
        {"id": "second-line", "points": [[0, 40], [100, 40], [100, 60], [0, 60]]},
        {"id": "right", "points": [[60, 0], [100, 0], [100, 20], [60, 20]]},
        {"id": "left", "points": [[0, 0], [50, 0], [50, 20], [0, 20]]},
    ]
    output = recognized_output(asked, [("three", 0.9), ("two", 0.8), ("one", 0.7)])
    assert [box["id"] for box in output.boxes] == ["second-line", "right", "left"]
    assert [box["text"] for box in output.boxes] == ["three", "two", "one"]
    assert output.text == "one two\nthree"
    with pytest.raises(ValueError):
        recognized_output(asked, [("one", 0.5)])


class StandIn:
    name = "stand-in"

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def detect_regions(self, png: bytes) -> DetectedRegions:
        return DetectedRegions(width=1, height=1, boxes=[(QUAD, 0.5)])

    def recognize_regions(
        self, png: bytes, quads: Sequence[Sequence[Sequence[float]]]
    ) -> list[tuple[str, float]]:
        self.asked.append(quads)
        return [(f"text {n}", 0.5) for n, _ in enumerate(quads)]


def test_an_engine_runs_a_task_by_its_region_methods_or_refuses_it() -> None:
    engine = StandIn()
    assert isinstance(engine, RegionEngine)
    assert run_region_task(engine, "detect", PNG, None).boxes[0]["id"] == "b1"
    output = run_region_task(engine, "recognize", PNG, [{"id": "a", "points": QUAD}])
    assert engine.asked == [[QUAD]] and output.boxes[0]["text"] == "text 0"

    class FullOcrOnly:
        name = "tesseract"

    with pytest.raises(RegionsUnsupported, match="tesseract"):
        run_region_task(FullOcrOnly(), "detect", PNG, None)

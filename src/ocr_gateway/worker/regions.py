"""Detection alone and recognition of given boxes alone: the `detect` and `recognize` tasks
of a page message (docs/detect.md), run in the OCR processes like full OCR.

An engine serves them by having the two methods of `RegionEngine` (the reference RapidOCR
engine has them; an engine without them fails such a page with the reason). `recognize`
crops each box with a perspective transform (RapidOCR's own crop helper) and reads it with
the recognition model only, so the answer has exactly the boxes asked, in their order and
with their ids; the page's text is those boxes' texts in reading order (`layout.py`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ocr_gateway.worker.engine import DetectedRegions
from ocr_gateway.worker.layout import Box, OcrOutput, to_output

# Ids of detected boxes: `b1`, `b2`, ... in the detector's order (top to bottom).
DETECTED_ID_PREFIX = "b"


@runtime_checkable
class RegionEngine(Protocol):
    """What an engine implements to serve `detect` and `recognize` pages (any new engine
    should: the flags or models for detection and recognition are its own business).

    - `detect_regions(png)`: the page's size and its text boxes, four `[x, y]` corners each
      (clockwise from the top left, in the PNG's pixels) with a score or None; nothing read.
    - `recognize_regions(png, quads)`: `(text, confidence)` for each quad, in the order given,
      without running detection.
    """

    name: str

    def detect_regions(self, png: bytes) -> DetectedRegions: ...

    def recognize_regions(
        self, png: bytes, quads: Sequence[Sequence[Sequence[float]]]
    ) -> list[tuple[str, float]]: ...


class RegionsUnsupported(Exception):
    """The configured engine has no detection-only or recognition-only mode."""


def decode_image(image_base64: str) -> bytes:
    from ocr_gateway.worker.process import PageImageInvalid

    try:
        return base64.b64decode(image_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PageImageInvalid(f"image_base64 is not valid base64: {exc}") from exc


def hull(quad: Sequence[Sequence[float]]) -> list[float]:
    """The axis-aligned box around four corners: `[x0, y0, x1, y1]`."""
    xs = [float(point[0]) for point in quad]
    ys = [float(point[1]) for point in quad]
    return [min(xs), min(ys), max(xs), max(ys)]


def detected_output(regions: DetectedRegions) -> OcrOutput:
    """A `detect` page's answer: no text, the boxes with ids, corners, scores and hulls."""
    boxes = [
        {
            "bbox": hull(points),
            "text": "",
            "confidence": None,
            "id": f"{DETECTED_ID_PREFIX}{number}",
            "points": points,
            "score": None if score is None else round(score, 4),
        }
        for number, (points, score) in enumerate(regions.boxes, start=1)
    ]
    return OcrOutput(text="", boxes=boxes)


def recognized_output(
    asked: Sequence[dict[str, Any]], read: Sequence[tuple[str, float]]
) -> OcrOutput:
    """A `recognize` page's answer: each box asked, in its order with its id, and its text;
    the page's text from those boxes in reading order."""
    boxes = []
    lines = []
    for box, (text, confidence) in zip(asked, read, strict=True):
        x0, y0, x1, y1 = hull(box["points"])
        boxes.append(
            {
                "bbox": [x0, y0, x1, y1],
                "text": text,
                "confidence": round(confidence, 4),
                "id": box["id"],
                "points": box["points"],
            }
        )
        lines.append(Box(x0, y0, x1, y1, text, confidence))
    return OcrOutput(text=to_output(lines).text, boxes=boxes)


def run_region_task(
    engine: object, task: str, png: bytes, boxes: Sequence[dict[str, Any]] | None
) -> OcrOutput:
    """Run `detect` or `recognize` on a decoded page with `engine`."""
    if not isinstance(engine, RegionEngine):
        raise RegionsUnsupported(
            f"the {getattr(engine, 'name', '?')} engine cannot {task} alone;"
            " use tesserocr or rapidocr"
        )
    if task == "detect":
        return detected_output(engine.detect_regions(png))
    if task == "recognize":
        asked = list(boxes or [])
        return recognized_output(asked, engine.recognize_regions(png, [b["points"] for b in asked]))
    raise ValueError(f"unknown page task {task!r}")


def region_task_page(
    task: str, image_base64: str, boxes: Sequence[dict[str, Any]] | None = None
) -> OcrOutput:
    """In an OCR process (as `process.recognize_page` is): decode the page, run the task."""
    from ocr_gateway.worker.process import PageImageInvalid, loaded_engine

    png = decode_image(image_base64)
    try:
        return run_region_task(loaded_engine(), task, png, boxes)
    except (OSError, SyntaxError) as exc:  # what Pillow raises for data it cannot decode
        raise PageImageInvalid(f"the page image cannot be decoded: {exc}") from exc

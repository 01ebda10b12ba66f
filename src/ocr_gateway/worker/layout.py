"""Reading order for recognised lines: blocks top to bottom, columns left to right.

Engines report text lines as boxes in whatever order their detector found them. A reader
wants lines top to bottom and, on a line, left to right; on a page set in two columns that
means the whole left column before the right one, or the text interleaves line by line. This
is a small recursive XY-cut: split at full-width horizontal gaps taller than a line, then at
a vertical gap between two columns of wide lines, and order what cannot be split by rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ocr_gateway.tables.model import Table

# A horizontal cut needs a blank band at least this many (median) line heights tall.
ROW_GAP_LINES = 1.0
# Boxes are shrunk by this many line heights on each side before looking for a column gap,
# because detectors pad their boxes and may start a right-column line a little left of it.
COLUMN_MARGIN_LINES = 0.5
# At most this share of the lines may cross a column gap (detectors sometimes merge two
# lines across a narrow gap); such lines are read with the column they start in.
COLUMN_MAX_CROSSING = 0.12
# Each side of a column cut must hold at least this many lines, and its lines must fill
# this share of the column's width: a column of list numbers or table keys is not a column.
COLUMN_MIN_LINES = 3
COLUMN_MIN_FILL = 0.6


@dataclass(frozen=True, slots=True)
class Box:
    """A recognised line (or word) in PNG pixel coordinates."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    confidence: float | None = None

    @property
    def height(self) -> float:
        return max(self.y1 - self.y0, 1.0)

    @property
    def width(self) -> float:
        return max(self.x1 - self.x0, 1.0)

    def as_json(self) -> dict[str, Any]:
        """The result-message form: `{"bbox": [x0, y0, x1, y1], "text", "confidence"}`."""
        return {
            "bbox": [round(self.x0, 1), round(self.y0, 1), round(self.x1, 1), round(self.y1, 1)],
            "text": self.text,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
        }


@dataclass(frozen=True, slots=True)
class OcrOutput:
    """A page's text in reading order, its line boxes in the same order, and its tables when
    the page asked for them (None: not asked, or finding them failed)."""

    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    tables: list[Table] | None = None


def to_output(boxes: Sequence[Box]) -> OcrOutput:
    """Order the boxes; one text line per visual line, words on a line joined by a space."""
    lines = reading_order([box for box in boxes if box.text.strip()])
    text = "\n".join(" ".join(box.text.strip() for box in line) for line in lines)
    return OcrOutput(text=text, boxes=[box.as_json() for line in lines for box in line])


def reading_order(boxes: Sequence[Box]) -> list[list[Box]]:
    """The boxes grouped into visual lines, the lines in reading order."""
    if not boxes:
        return []
    line_height = statistics.median(box.height for box in boxes)
    return _order(list(boxes), line_height)


def _order(boxes: list[Box], line_height: float) -> list[list[Box]]:
    if len(boxes) <= 1:
        return _rows(boxes)
    bands = _split_rows(boxes, min_gap=line_height * ROW_GAP_LINES)
    if len(bands) > 1:
        return [line for band in bands for line in _order(band, line_height)]
    columns = _split_columns(boxes, line_height)
    if columns is not None:
        left, right = columns
        return _order(left, line_height) + _order(right, line_height)
    return _rows(boxes)


def _split_rows(boxes: list[Box], *, min_gap: float) -> list[list[Box]]:
    """Split where a blank horizontal band at least `min_gap` tall crosses the whole set."""
    ordered = sorted(boxes, key=lambda box: box.y0)
    bands: list[list[Box]] = [[ordered[0]]]
    bottom = ordered[0].y1
    for box in ordered[1:]:
        if box.y0 - bottom >= min_gap:
            bands.append([box])
        else:
            bands[-1].append(box)
        bottom = max(bottom, box.y1)
    return bands


def _split_columns(boxes: list[Box], line_height: float) -> tuple[list[Box], list[Box]] | None:
    """Find the vertical gap between two columns of text lines, if there is one."""
    margin = line_height * COLUMN_MARGIN_LINES
    left_edge = min(box.x0 for box in boxes)
    right_edge = max(box.x1 for box in boxes)
    span = right_edge - left_edge
    if span <= 0:
        return None
    # Candidate cuts: just right of a shrunk box end, inside the middle of the block.
    candidates = sorted(
        {
            box.x1 - margin + 1.0
            for box in boxes
            if left_edge + 0.25 * span < box.x1 - margin + 1.0 < left_edge + 0.75 * span
        }
    )
    best: tuple[int, float] | None = None
    for cut in candidates:
        crossing = sum(1 for box in boxes if box.x0 + margin < cut < box.x1 - margin)
        if best is None or crossing < best[0]:
            best = (crossing, cut)
    if best is None or best[0] > COLUMN_MAX_CROSSING * len(boxes):
        return None
    cut = best[1]
    left = [box for box in boxes if box.x0 + margin < cut]
    right = [box for box in boxes if box.x0 + margin >= cut]
    if len(left) < COLUMN_MIN_LINES or len(right) < COLUMN_MIN_LINES:
        return None
    left_fill = statistics.median(min(box.x1, cut) - box.x0 for box in left) / (cut - left_edge)
    right_start = min(box.x0 for box in right)
    right_fill = statistics.median(box.width for box in right) / max(right_edge - right_start, 1)
    if left_fill < COLUMN_MIN_FILL or right_fill < COLUMN_MIN_FILL:
        return None
    return left, right


def _rows(boxes: list[Box]) -> list[list[Box]]:
    """Group boxes that overlap vertically by half a line into lines; sort each by x."""
    lines: list[list[Box]] = []
    for box in sorted(boxes, key=lambda box: (box.y0 + box.y1) / 2):
        if lines:
            line = lines[-1]
            top = min(b.y0 for b in line)
            bottom = max(b.y1 for b in line)
            overlap = min(bottom, box.y1) - max(top, box.y0)
            if overlap >= 0.5 * min(box.height, bottom - top):
                line.append(box)
                continue
        lines.append([box])
    return [sorted(line, key=lambda box: box.x0) for line in lines]

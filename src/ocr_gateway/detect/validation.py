"""A PATCH of the boxes checked against the job's pages: pure functions.

Each refusal is an `InvalidField` (422) whose `path` names the bad field as the body spells it,
`pages[0].boxes[3].points`; nothing is stored unless the whole body passes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.detect import MAX_BOXES_PER_PAGE
from ocr_gateway.detect.schemas import DetectBox, DetectPage, DetectPatch, DetectResult, PatchBox

# A box whose area is under this many square pixels, or a side shorter than a pixel, has
# nothing in it to read (and no perspective transform to crop it by).
MIN_AREA_PX = 1.0
MIN_SIDE_PX = 1.0
# Ids given to boxes sent without one: `hand-1`, `hand-2`, ... (skipping ids taken).
HAND_ID_PREFIX = "hand-"


def path_of(loc: Sequence[int | str]) -> str:
    """`("pages", 0, "boxes", 3, "points")` → `pages[0].boxes[3].points`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def refuse(path: str, detail: str) -> InvalidField:
    return InvalidField(f"{path}: {detail}").add_fields(path=path)


def parse_patch(raw: bytes | bytearray) -> DetectPatch:
    """The body as a `DetectPatch`, or a 422 naming the first field that is not its shape."""
    try:
        return DetectPatch.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise refuse(path_of(first["loc"]), str(first["msg"])) from None


def corners(points: Sequence[Any], path: str) -> list[list[float]]:
    """Four `[x, y]` corners from either form; an axis-aligned `[x0, y0, x1, y1]` becomes its
    corners clockwise from the top left."""
    if len(points) == 4 and all(_is_number(value) for value in points):
        x0, y0, x1, y1 = (float(value) for value in points)
        if x1 <= x0 or y1 <= y0:
            raise refuse(path, "a degenerate box: [x0, y0, x1, y1] needs x1 > x0 and y1 > y0")
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    if len(points) != 4 or not all(
        isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)
        for point in points
    ):
        raise refuse(path, "points must be four [x, y] points, or [x0, y0, x1, y1]")
    return [[float(point[0]), float(point[1])] for point in points]


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def quad_area(quad: Sequence[Sequence[float]]) -> float:
    """The area of a quadrilateral (shoelace formula)."""
    twice = 0.0
    for index, (x, y) in enumerate(quad):
        nx, ny = quad[(index + 1) % len(quad)]
        twice += x * ny - nx * y
    return abs(twice) / 2


def check_box(box: PatchBox, path: str, width: int, height: int) -> list[list[float]]:
    """The box's four corners, inside the page and enclosing some area."""
    quad = corners(box.points, f"{path}.points")
    for x, y in quad:
        if not (0 <= x <= width and 0 <= y <= height):
            raise refuse(
                f"{path}.points",
                f"point [{x:g}, {y:g}] is outside the page (0..{width} x 0..{height})",
            )
    sides = [math.dist(quad[i], quad[(i + 1) % 4]) for i in range(4)]
    if quad_area(quad) < MIN_AREA_PX or min(sides) < MIN_SIDE_PX:
        raise refuse(f"{path}.points", "a degenerate box: it encloses no area to read")
    return quad


def validate_patch(job_id: uuid.UUID, patch: DetectPatch, stored: DetectResult) -> list[DetectPage]:
    """The new detect result's pages (every page of the job, in order; a page the body does not
    list has no boxes), or a 422 naming the first bad field."""
    if patch.job_id != job_id:
        raise refuse("job_id", f"the body names job {patch.job_id}, not {job_id}")
    known = {page.page_index: page for page in stored.pages}
    sent: dict[int, DetectPage] = {}
    for page_number, page in enumerate(patch.pages):
        path = f"pages[{page_number}]"
        stored_page = known.get(page.page_index)
        if stored_page is None:
            raise refuse(
                f"{path}.page_index",
                f"page {page.page_index} is not in the job (pages 0..{len(known) - 1})",
            )
        if page.page_index in sent:
            raise refuse(f"{path}.page_index", f"page {page.page_index} is listed twice")
        if page.width != stored_page.width:
            raise refuse(f"{path}.width", f"the page is {stored_page.width} pixels wide")
        if page.height != stored_page.height:
            raise refuse(f"{path}.height", f"the page is {stored_page.height} pixels high")
        if len(page.boxes) > MAX_BOXES_PER_PAGE:
            raise refuse(f"{path}.boxes", f"more than {MAX_BOXES_PER_PAGE} boxes on a page")
        sent[page.page_index] = DetectPage(
            page_index=page.page_index,
            width=page.width,
            height=page.height,
            boxes=_page_boxes(page.boxes, path, page.width, page.height),
        )
    return [
        sent.get(index)
        or DetectPage(page_index=index, width=page.width, height=page.height, boxes=[])
        for index, page in sorted(known.items())
    ]


def _page_boxes(boxes: Sequence[PatchBox], path: str, width: int, height: int) -> list[DetectBox]:
    """The page's boxes checked, in the order sent; ids unique, missing ones given."""
    taken: set[str] = set()
    for index, box in enumerate(boxes):
        if box.id is not None:
            if box.id in taken:
                raise refuse(f"{path}.boxes[{index}].id", f"id {box.id!r} is used twice")
            taken.add(box.id)
    counter = 0
    checked: list[DetectBox] = []
    for index, box in enumerate(boxes):
        quad = check_box(box, f"{path}.boxes[{index}]", width, height)
        box_id = box.id
        if box_id is None:
            counter += 1
            while f"{HAND_ID_PREFIX}{counter}" in taken:
                counter += 1
            box_id = f"{HAND_ID_PREFIX}{counter}"
            taken.add(box_id)
        checked.append(DetectBox(id=box_id, points=quad, score=box.score))
    return checked

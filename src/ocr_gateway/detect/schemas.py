"""The shapes of `/v1/ocr/jobs`: a box, a page of boxes, the detect result, the job, the
recognised result."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ocr_gateway.db.models import DetectStatus


class DetectBox(BaseModel):
    """A text box in page pixels: its id on the page, four corners clockwise from the top
    left, and the detector's score (None for a box drawn by hand)."""

    id: str
    points: list[list[float]]
    score: float | None = None


class DetectPage(BaseModel):
    """One page's boxes; `page_index` counts from 0, `width` and `height` are the page image's
    pixels (the coordinates' bounds)."""

    page_index: int
    width: int
    height: int
    boxes: list[DetectBox]


class DetectResult(BaseModel):
    """A job's boxes, every page of it; `version` grows by one with each replacement."""

    job_id: uuid.UUID
    version: int
    pages: list[DetectPage]


class PatchBox(BaseModel):
    """A box as a PATCH may send it: only `points` is needed, as four `[x, y]` corners or as
    an axis-aligned `[x0, y0, x1, y1]`; a box without `id` is given one."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, min_length=1, max_length=64)
    points: list[Any]
    score: float | None = None


class PatchPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    page_index: int
    width: int
    height: int
    boxes: list[PatchBox]


class DetectPatch(BaseModel):
    """`PATCH /v1/ocr/jobs/{job_id}/detect`: the whole detect result anew."""

    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    pages: list[PatchPage]


class RecognizedBox(BaseModel):
    """A box of the detect result with the text recognised in it."""

    id: str
    points: list[list[float]]
    text: str
    confidence: float | None = None


class RecognizedPage(BaseModel):
    """A page's text in reading order, and its boxes in the detect result's order."""

    page_index: int
    status: str
    text: str
    boxes: list[RecognizedBox]
    error: str | None = None


class OcrResult(BaseModel):
    pages: list[RecognizedPage]


class DetectJobOut(BaseModel):
    """`GET /v1/ocr/jobs/{job_id}`: the job's status, its detect result (once detected), and
    its recognised text (once DONE)."""

    job_id: uuid.UUID
    status: DetectStatus
    filename: str | None = None
    page_count: int | None = None
    error: str | None = None
    detect_result: DetectResult | None = None
    ocr_result: OcrResult | None = None


class DetectJobCreated(BaseModel):
    """`POST /v1/ocr/jobs` and `POST /v1/ocr/jobs/{job_id}/upload`."""

    job_id: uuid.UUID
    status: DetectStatus

"""The result formats, without I/O: names, media types, one page's JSON entry, the text's
separators, the archive's member names, and where a box's words go on a PDF page.

Pure functions only, shared by the API process (txt and json, streamed) and the pool
processes that build the pdf and zip files (`builders.py`).
"""

from __future__ import annotations

import enum
import hashlib
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ocr_gateway.jobs.schemas import text_boxes

# Pages of the txt result are separated by a form feed, as pdftotext separates them.
PAGE_SEPARATOR = "\f"
POINTS_PER_INCH = 72.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ExportFormat(enum.StrEnum):
    TXT = "txt"
    JSON = "json"
    ZIP = "zip"
    PDF = "pdf"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self]

    @property
    def built_as_file(self) -> bool:
        """Built once into a file next to the pages (pdf, zip); txt and json are streamed."""
        return self in (ExportFormat.ZIP, ExportFormat.PDF)


MEDIA_TYPES = {
    ExportFormat.TXT: "text/plain; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.ZIP: "application/zip",
    ExportFormat.PDF: "application/pdf",
}


def page_entry(
    page_number: int, status: str, text: str | None, boxes: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """One page of the json result: boxes as the client API shows them (`polygon` points)."""
    return {
        "page_number": page_number,
        "status": status,
        "text": text,
        "boxes": [box.model_dump() for box in text_boxes(boxes)],
    }


def json_head(job_id: uuid.UUID) -> bytes:
    """The json result up to its first page: `{"job_id": ..., "pages": [`."""
    return b'{"job_id":' + orjson.dumps(str(job_id)) + b',"pages":['


JSON_TAIL = b"]}"


def json_pages(entries: list[dict[str, Any]], *, first: bool) -> bytes:
    """A batch of page entries inside the `pages` array; `first` when none came before."""
    body = b",".join(orjson.dumps(entry) for entry in entries)
    return body if first or not body else b"," + body


def txt_pages(texts: list[str | None], *, first: bool) -> str:
    """A batch of pages' texts, each page after a form feed but the very first one; a page
    without text (not done, failed) is empty, so the page count stays the job's."""
    joined = PAGE_SEPARATOR.join(text or "" for text in texts)
    return joined if first or not texts else PAGE_SEPARATOR + joined


def member_stem(page_number: int) -> str:
    """`pages/0001`: the archive's name for a page, sorted by page number up to 9,999."""
    return f"pages/{page_number:04d}"


def export_key(status: str, updated_at: float, rendered: int, completed: int, failed: int) -> str:
    """What an export was built from: a later change to the job gives another key, so another
    file, and a finished job's file is reused as long as nothing changes."""
    raw = f"{status}|{updated_at:.6f}|{rendered}|{completed}|{failed}".encode()
    return hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]


def export_name(fmt: ExportFormat, key: str, *, final: bool) -> str:
    """`result-<key>.pdf` for a finished job, `partial-<key>.pdf` for a job still running, so
    a partial export is never served as a final one."""
    return f"{'result' if final else 'partial'}-{key}.{fmt.value}"


def png_size(head: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its first 24 bytes (the IHDR chunk)."""
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and how big one box's words are drawn: the baseline's start in points, the font
    size, and the horizontal stretch that makes the words as wide as the box."""

    x: float
    baseline: float
    fontsize: float
    stretch: float


def box_points(polygon: Sequence[Sequence[float]], dpi: int) -> tuple[float, float, float, float]:
    """A box's outline in image pixels (at `dpi`) as a PDF rectangle in points."""
    scale = POINTS_PER_INCH / dpi
    xs = [float(point[0]) for point in polygon]
    ys = [float(point[1]) for point in polygon]
    return min(xs) * scale, min(ys) * scale, max(xs) * scale, max(ys) * scale


def place_words(
    rect: tuple[float, float, float, float],
    natural_width: float,
    ascender: float,
    descender: float,
) -> Placement | None:
    """Fit a line of words to a box: the font is as tall as the box (ascender to descender),
    and stretched horizontally so the words span its width. `natural_width` is the words'
    width at font size 1. None for a box with no area or words with no width."""
    x0, y0, x1, y1 = rect
    width, height = x1 - x0, y1 - y0
    extent = ascender - descender
    if width <= 0 or height <= 0 or natural_width <= 0 or extent <= 0:
        return None
    fontsize = height / extent
    return Placement(
        x=x0,
        baseline=y1 + descender * fontsize,
        fontsize=fontsize,
        stretch=width / (natural_width * fontsize),
    )

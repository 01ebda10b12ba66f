"""Every message that crosses the broker, defined once: its model, and its one encoder.

- `PageMessage` on the pages queue: `{"job_id", "page_number", "image_base64", "tables"?}`;
  fields added later (`task`, `boxes`, `image_url`, `tables`) are optional, and a message
  without them means full OCR. `"tables": true` asks the worker to find the page's tables too.
  `"task": "detect"` asks for the text boxes only; `"task": "recognize"` carries `boxes`
  (`RegionBox`: `{"id", "points": [[x, y] x 4], "score"?}`) and asks for their text only.
  With `MESSAGE_IMAGES=url` the message has `image_url` (a URL to GET the PNG from) instead of
  `image_base64`: exactly one of the two.
- `ResultMessage` on the results queue: `{"job_id", "page_number", "status", "text", "error"?,
  "boxes"?, "tables"?, "task"?}`; `tables` has the shape of `tables.model.Table`. The result of
  a `detect` page carries the boxes found (`id`, `points`, `score`, and their `bbox`, no text);
  of a `recognize` page, one box per box asked, in the order and with the ids asked, each with
  its `text` and `confidence`, and `text` is the page's text in reading order.

The dispatcher builds page bodies with `encode_page_message`, a byte-level fast path (a page is
~200 KB of base64, and a JSON encoder would copy it twice); the unit tests hold it byte for byte
to `PageMessage`'s own JSON, so the two can never disagree.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import pybase64
import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from ocr_gateway.tables.model import Table

# The longest `image_url` taken (a presigned S3 URL with a session token is ~1.5 KB).
MAX_IMAGE_URL = 8192


def _absent(value: object) -> bool:
    """An optional field left out of the JSON when it is not set."""
    return value is None


# What a page message asks of the worker: full OCR (the default, and what a message without
# `task` means), the text boxes only, or the text of the boxes it carries only.
PageTask = Literal["ocr", "detect", "recognize"]
DEFAULT_TASK: PageTask = "ocr"
Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class RegionBox(BaseModel):
    """A text box on the page image: four corners in PNG pixels (clockwise from top left, as
    detectors give them), its id on the page, and the detector's score (None: drawn by hand)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    points: list[Point] = Field(min_length=4, max_length=4)
    score: float | None = Field(default=None, exclude_if=_absent)


_REGION_BOXES = TypeAdapter(list[RegionBox])


class PageMessage(BaseModel):
    """One page for a worker; extra fields are allowed and ignored.

    The image stays base64 here: it is decoded in the OCR process, off the event loop, and a
    bad image there becomes a `failed` result for this page rather than a dead letter.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    page_number: int = Field(ge=1)
    image_base64: str | None = Field(default=None, min_length=1, exclude_if=_absent)
    # Where to GET the PNG instead (`MESSAGE_IMAGES=url`): presigned S3, or the gateway's
    # signed page URL; it expires (MESSAGE_IMAGE_URL_TTL_S).
    image_url: str | None = Field(default=None, max_length=MAX_IMAGE_URL, exclude_if=_absent)
    # Find the page's tables as well (a job with `extract_tables`). Left out of the JSON when
    # false, so a page that asks nothing is byte for byte what it was before.
    tables: bool = Field(default=False, exclude_if=lambda asked: not asked)
    # `detect` or `recognize` (with `boxes`); left out for full OCR, so an `ocr` page's body
    # is byte for byte what it was before the field existed.
    task: PageTask = Field(default=DEFAULT_TASK, exclude_if=lambda task: task == DEFAULT_TASK)
    boxes: list[RegionBox] | None = Field(default=None, exclude_if=_absent)

    @field_validator("image_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("image_url must be an http or https URL")
        return value

    @model_validator(mode="after")
    def _one_image(self) -> Self:
        if (self.image_base64 is None) == (self.image_url is None):
            raise ValueError("a page message has exactly one of image_base64 and image_url")
        if (self.task == "recognize") != (self.boxes is not None):
            raise ValueError("a page message has boxes exactly when its task is recognize")
        return self

    @property
    def message_id(self) -> str:
        return page_message_id(self.job_id, self.page_number)


def page_message_id(job_id: uuid.UUID, page_number: int) -> str:
    """The AMQP message id of a page (and of its result): `<job_id>:<page_number>`."""
    return f"{job_id}:{page_number}"


def encode_page_message(
    job_id: uuid.UUID,
    page_number: int,
    png: bytes | None = None,
    *,
    image_url: str | None = None,
    tables: bool = False,
    task: PageTask = DEFAULT_TASK,
    boxes: Sequence[RegionBox] | None = None,
) -> bytes:
    """The JSON body of `PageMessage(job_id, page_number, base64(png) or image_url, tables,
    task, boxes)`, built as bytes in one join: a UUID, an int and base64 need no JSON
    escaping, so the page body is copied once. pybase64 (SIMD) encodes a page in microseconds;
    the standard library takes ~0.4 ms. A URL and the boxes are encoded by pydantic's own JSON
    encoder, as the model would be."""
    if (png is None) == (image_url is None):
        raise ValueError("a page message has exactly one of png and image_url")
    if (task == "recognize") != (boxes is not None):
        raise ValueError("a page message has boxes exactly when its task is recognize")
    head = b'{"job_id":"%s","page_number":%d,' % (str(job_id).encode("ascii"), page_number)
    tail = b',"tables":true' if tables else b""
    if task != DEFAULT_TASK:
        tail += b',"task":"%s"' % task.encode("ascii")
    if boxes is not None:
        tail += b',"boxes":' + _REGION_BOXES.dump_json(list(boxes))
    tail += b"}"
    if image_url is not None:
        return b"".join((head, b'"image_url":', pydantic_core.to_json(image_url), tail))
    assert png is not None
    return b"".join((head, b'"image_base64":"', pybase64.b64encode(png), b'"', tail))


class TextBox(BaseModel):
    """A word or line on the page image, in PNG pixel coordinates."""

    model_config = ConfigDict(extra="allow")

    bbox: tuple[float, float, float, float]
    text: str = ""
    confidence: float | None = None
    # A detected or asked box (`task` detect or recognize): its id and corners, and the
    # detector's score. Left out otherwise, so full OCR's boxes keep their shape.
    id: str | None = Field(default=None, max_length=64, exclude_if=_absent)
    points: list[Point] | None = Field(default=None, exclude_if=_absent)
    score: float | None = Field(default=None, exclude_if=_absent)


class ResultMessage(BaseModel):
    """`{"job_id", "page_number", "status": "done"|"failed", "text", "error"?, "boxes"?,
    "tables"?}`: `tables` is there when the page asked for them (`[]`: none found)."""

    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    page_number: int = Field(ge=1)
    status: Literal["done", "failed"]
    text: str = ""
    error: str | None = None
    boxes: list[TextBox] | None = None
    tables: list[Table] | None = None
    # Who answered: `hostname:pid` from the reference worker, for the monitoring page's
    # per-worker rates. Optional, so older and third-party workers' results stay valid.
    worker: str | None = Field(default=None, max_length=200)
    # The page's task, as its message asked (None: full OCR, from any worker).
    task: PageTask | None = None

    @field_validator("text", "error")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        """PostgreSQL text cannot hold NUL characters."""
        return None if value is None else value.replace("\x00", "")

    @classmethod
    def done(
        cls,
        page: PageMessage,
        text: str,
        boxes: Sequence[dict[str, Any]],
        tables: Sequence[Table] | None = None,
    ) -> ResultMessage:
        return cls(
            job_id=page.job_id,
            page_number=page.page_number,
            status="done",
            text=text,
            boxes=[TextBox.model_validate(box) for box in boxes],
            tables=None if tables is None else list(tables),
            worker=worker_name(),
            task=None if page.task == DEFAULT_TASK else page.task,
        )

    @classmethod
    def failed(cls, page: PageMessage, error: str) -> ResultMessage:
        return cls(
            job_id=page.job_id,
            page_number=page.page_number,
            status="failed",
            error=error,
            worker=worker_name(),
            task=None if page.task == DEFAULT_TASK else page.task,
        )

    def encode(self) -> bytes:
        """The message body: JSON without the fields that are None."""
        return self.model_dump_json(exclude_none=True).encode()

    @property
    def message_id(self) -> str:
        return page_message_id(self.job_id, self.page_number)


def worker_name() -> str:
    """This process as a result's `worker`: `hostname:pid`, at most 200 characters."""
    return f"{socket.gethostname()[:180]}:{os.getpid()}"

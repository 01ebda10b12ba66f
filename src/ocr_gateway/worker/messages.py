"""The pages-queue contract as the worker reads it, and the result it answers with."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

from ocr_gateway.results.messages import ResultMessage, TextBox
from ocr_gateway.worker.layout import OcrOutput


class PageMessage(BaseModel):
    """`{"job_id", "page_number", "image_base64"}`; extra fields are allowed and ignored.

    The image stays base64 here: it is decoded in the OCR process, off the event loop, and a
    bad image there becomes a `failed` result for this page rather than a dead letter.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    page_number: int = Field(ge=1)
    image_base64: str = Field(min_length=1)


def done_result(page: PageMessage, output: OcrOutput) -> ResultMessage:
    return ResultMessage(
        job_id=page.job_id,
        page_number=page.page_number,
        status="done",
        text=output.text,
        boxes=[TextBox.model_validate(box) for box in output.boxes],
    )


def failed_result(page: PageMessage, error: str) -> ResultMessage:
    return ResultMessage(
        job_id=page.job_id, page_number=page.page_number, status="failed", error=error
    )

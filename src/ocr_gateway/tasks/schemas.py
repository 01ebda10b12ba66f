"""The request and answers of the task routes, in the shapes clients of the Celery-based OCR
API already code against (`task_id`, `status` words, `result`), plus `pages` with `detail`."""

from __future__ import annotations

import enum
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ocr_gateway.jobs.schemas import TextBox


class TaskState(enum.StrEnum):
    """The status words of Celery: PENDING (not published yet), STARTED (published, not
    finished), SUCCESS, FAILURE (failed or cancelled)."""

    PENDING = "PENDING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCESS, TaskState.FAILURE)


class TaskRequest(BaseModel):
    """`image_data`: base64 of a PNG, JPEG, TIFF, BMP or WebP (a `data:image/...;base64,`
    prefix is accepted), or a list of them; the result has the same shape, in the same order."""

    # Strict: "true" is not a bool, nor a number a string. Other fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore")

    image_data: str | list[str] = Field(
        description="Base64 of one image, or a list of them (counted from index 0)."
    )
    detail: bool = Field(
        default=False,
        description="`/image-sync` only: add `pages`, each with its text and line boxes.",
    )


class TaskSubmitted(BaseModel):
    task_id: uuid.UUID


TaskResultValue = str | list[str]


class TaskStatus(BaseModel):
    """A task as `GET /image` shows it. `result` is null until SUCCESS: one text for one
    image, a list of texts for a list (an image of several frames gives its pages' texts
    joined by form feeds). FAILURE adds `error` (`cancelled` for a cancelled task)."""

    task_id: uuid.UUID
    status: TaskState
    result: TaskResultValue | None = None
    error: str | None = None


class TaskPage(BaseModel):
    """One page of a task (one frame of one image), in the order sent."""

    image: int = Field(description="The image it comes from, counted from 0.")
    text: str
    boxes: list[TextBox]


class TaskResult(BaseModel):
    """`/image-sync`'s answer: the text (a list of texts for a list); `pages` with `detail`."""

    task_id: uuid.UUID
    status: Literal[TaskState.SUCCESS] = TaskState.SUCCESS
    result: TaskResultValue
    pages: list[TaskPage] | None = None


class TaskTimedOut(BaseModel):
    """504 of `/image-sync`: the result was not there in time. The task goes on; `GET
    /image?task_id=` returns its result later."""

    task_id: uuid.UUID
    status: TaskState


class TaskFailed(BaseModel):
    """502 of `/image-sync`: the task failed (a page the workers could not read, a render
    that failed) or was cancelled."""

    task_id: uuid.UUID
    status: Literal[TaskState.FAILURE] = TaskState.FAILURE
    result: None = None
    error: str


class TaskProgress(BaseModel):
    """A message of `/watch-task`: sent at once and on every change, the last one SUCCESS or
    FAILURE. `done` counts the pages finished (recognised or failed) of `total`."""

    task_id: uuid.UUID
    status: TaskState
    done: int
    total: int
    result: TaskResultValue | None = None
    error: str | None = None

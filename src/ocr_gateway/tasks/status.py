"""A task's status word, error and result, from its job and pages: pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ocr_gateway.db.models import JobStatus, PageStatus
from ocr_gateway.exports.formats import PAGE_SEPARATOR
from ocr_gateway.jobs.schemas import text_boxes
from ocr_gateway.tasks.schemas import TaskPage, TaskResultValue, TaskState

CANCELLED = "cancelled"
# Pages that have reached the workers (or come back from them): the task has started.
STARTED_PAGES = frozenset({PageStatus.QUEUED, PageStatus.DONE, PageStatus.FAILED})


@dataclass(frozen=True, slots=True)
class PageView:
    """What a task needs of a page."""

    page_number: int
    status: str
    text: str | None = None
    boxes: list[dict[str, Any]] | None = None
    error: str | None = None


def task_state(job_status: str, page_statuses: Sequence[str]) -> TaskState:
    """SUCCESS when the job completed, FAILURE when it failed or was cancelled, STARTED when
    a page has been published (confirmed by the broker) or answered, PENDING before."""
    status = JobStatus(job_status)
    if status == JobStatus.COMPLETED:
        return TaskState.SUCCESS
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return TaskState.FAILURE
    if status == JobStatus.QUEUED or any(s in STARTED_PAGES for s in page_statuses):
        return TaskState.STARTED
    return TaskState.PENDING


def failure_reason(job_status: str, job_error: str | None, pages: Sequence[PageView]) -> str:
    """Why a task failed: `cancelled`, the job's own error (its rendering), or its pages'."""
    if job_status == JobStatus.CANCELLED:
        return CANCELLED
    if job_error:
        return job_error
    failed = [p for p in pages if p.status == PageStatus.FAILED]
    if not failed:
        return "the task failed"
    return "; ".join(f"page {p.page_number}: {p.error or 'failed'}" for p in failed[:5])


def page_images(frames: Sequence[int]) -> list[int]:
    """The image (counted from 0) each page comes from, page 1 first."""
    return [image for image, count in enumerate(frames) for _ in range(count)]


def _image_of(page_number: int, images: Sequence[int]) -> int:
    """The image a page comes from; a page beyond the frames counted (none should be) is the
    last image's."""
    return images[min(page_number, len(images)) - 1] if images else 0


def shape_result(
    pages: Sequence[PageView], frames: Sequence[int], *, as_list: bool
) -> TaskResultValue:
    """The pages' texts as one text per image, in order (an image of several frames: its
    pages' texts joined by form feeds); a list if the images came as a list."""
    images = page_images(frames)
    per_image: list[list[str]] = [[] for _ in frames]
    for page in sorted(pages, key=lambda p: p.page_number):
        if per_image:
            per_image[_image_of(page.page_number, images)].append(page.text or "")
    joined = [PAGE_SEPARATOR.join(parts) for parts in per_image]
    if as_list:
        return joined
    return joined[0] if joined else ""


def detail_pages(pages: Sequence[PageView], frames: Sequence[int]) -> list[TaskPage]:
    """Every page's text and line boxes, in order, each naming its image."""
    images = page_images(frames) or [0]
    return [
        TaskPage(
            image=_image_of(page.page_number, images),
            text=page.text or "",
            boxes=text_boxes(page.boxes),
        )
        for page in sorted(pages, key=lambda p: p.page_number)
    ]

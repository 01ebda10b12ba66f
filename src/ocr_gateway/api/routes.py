"""All routes under /api/v1. Each is a thin call into a service."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status

from ocr_gateway import __version__
from ocr_gateway.api.deps import ServicesDep, require_admin_key
from ocr_gateway.api.schemas import (
    ActionAccepted,
    Deleted,
    DependencyHealth,
    ErrorResponse,
    Health,
    JobDetail,
    JobList,
    JobSummary,
    PageDetail,
    StartAccepted,
    UploadAccepted,
)
from ocr_gateway.db import repository as repo
from ocr_gateway.dispatch.control import StartScheduled
from ocr_gateway.ingest.media import IMAGE_TYPES, PDF_TYPES, MediaType

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422)
}

HEALTH_TIMEOUT_S = 3.0

JobId = Annotated[uuid.UUID, Path(description="The job's UUID")]
PageNumber = Annotated[int, Path(ge=1, le=1_000_000, description="1-based page number")]


def _multipart_body(description: str) -> dict[str, Any]:
    """OpenAPI for a streamed multipart body: the route reads it itself, FastAPI does not."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": description,
                            }
                        },
                    }
                }
            },
        }
    }


uploads = APIRouter(tags=["uploads"], responses=ERRORS)


async def _accept(
    services: ServicesDep, request: Request, accepted: frozenset[MediaType]
) -> UploadAccepted:
    upload = await services.ingest.accept_upload(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        accepted,
    )
    return UploadAccepted(
        job_id=upload.job_id,
        filename=upload.filename,
        media_type=upload.media_type.value,
        total_page_number=upload.total_page_number,
    )


@uploads.post(
    "/ocrpdf",
    operation_id="upload_pdf",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    openapi_extra=_multipart_body("A PDF document"),
)
async def upload_pdf(services: ServicesDep, request: Request) -> UploadAccepted:
    """Upload a PDF; its pages are rendered to PNG in the background."""
    return await _accept(services, request, PDF_TYPES)


@uploads.post(
    "/ocrimage",
    operation_id="upload_image",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    openapi_extra=_multipart_body("A PNG, JPEG, TIFF (multi-page too), BMP or WebP image"),
)
async def upload_image(services: ServicesDep, request: Request) -> UploadAccepted:
    """Upload an image; each frame becomes one page."""
    return await _accept(services, request, IMAGE_TYPES)


admin = APIRouter(
    prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin_key)], responses=ERRORS
)


@admin.get("/jobs", operation_id="list_jobs", response_model=JobList)
async def list_jobs(
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobList:
    """Jobs that are not completed yet, newest first."""
    page = await services.jobs.list_open(limit=limit, cursor=cursor, offset=offset)
    return JobList(
        items=[JobSummary.model_validate(job) for job in page.items],
        next_cursor=page.next_cursor,
        limit=limit,
    )


@admin.get("/job/{job_id}", operation_id="get_job", response_model=JobDetail)
async def get_job(services: ServicesDep, job_id: JobId) -> JobDetail:
    """One job with its counters and pages."""
    job, pages = await services.jobs.get(job_id)
    summary = JobSummary.model_validate(job)
    return JobDetail(**summary.model_dump(), pages=[PageDetail.model_validate(p) for p in pages])


def _started(scheduled: StartScheduled) -> StartAccepted:
    return StartAccepted(
        scope=scheduled.scope,
        job_id=scheduled.job_id,
        page_number=scheduled.page_number,
        pending_pages=scheduled.pending_pages,
    )


@admin.post(
    "/start",
    operation_id="start_all",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
)
async def start_all(services: ServicesDep) -> StartAccepted:
    """Publish every pending page of every job, until none is left or a stop."""
    return _started(await services.control.start_all())


@admin.post(
    "/start/{job_id}",
    operation_id="start_job",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
)
async def start_job(services: ServicesDep, job_id: JobId) -> StartAccepted:
    """Publish the pending pages of one job."""
    return _started(await services.control.start_job(job_id))


@admin.post(
    "/start/{job_id}/page/{page_number}",
    operation_id="start_page",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
)
async def start_page(
    services: ServicesDep, job_id: JobId, page_number: PageNumber
) -> StartAccepted:
    """Publish one page (a failed page is reset to pending first)."""
    return _started(await services.control.start_page(job_id, page_number))


@admin.post(
    "/stop",
    operation_id="stop_publishing",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def stop_publishing(services: ServicesDep) -> ActionAccepted:
    """Stop publishing in every app process; unconfirmed pages return to pending."""
    cleared = await services.control.stop()
    return ActionAccepted(action="stop", detail=f"{cleared} start request(s) cancelled")


@admin.delete(
    "/delete/job/{job_id}/page/{page_number}", operation_id="delete_page", response_model=Deleted
)
async def delete_page(services: ServicesDep, job_id: JobId, page_number: PageNumber) -> Deleted:
    """Remove one page: its PNG and its row; its number joins the job's excluded_pages."""
    await services.jobs.delete_page(job_id, page_number)
    return Deleted(deleted="page", job_id=job_id, page_number=page_number)


@admin.delete("/delete/job/{job_id}", operation_id="delete_job", response_model=Deleted)
async def delete_job(services: ServicesDep, job_id: JobId) -> Deleted:
    """Remove one job: its folder under files/ and its rows."""
    await services.jobs.delete_job(job_id)
    return Deleted(deleted="job", job_id=job_id)


@admin.delete(
    "/delete/jobs",
    operation_id="delete_all_jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def delete_all_jobs(services: ServicesDep) -> ActionAccepted:
    """Stop publishing, remove every job from files/ and the DB, and purge the pages queue."""
    services.control.spawn(services.jobs.delete_all())
    return ActionAccepted(action="delete_all_jobs", detail="scheduled")


@admin.delete(
    "/delete/queue",
    operation_id="purge_pages_queue",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def purge_pages_queue(services: ServicesDep) -> ActionAccepted:
    """Stop publishing, purge the pages queue, and return queued pages to pending."""
    services.control.spawn(services.control.purge_queue())
    return ActionAccepted(action="purge_pages_queue", detail="scheduled")


health = APIRouter(tags=["health"])


@health.get("/health", operation_id="health", response_model=Health)
async def get_health(services: ServicesDep) -> Health:
    """Liveness (this answer) and readiness of PostgreSQL and RabbitMQ, each named."""
    publishing = False
    try:
        async with services.sessions() as session:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await repo.ping(session)
                publishing = await repo.publishing_in_progress(session)
        database = DependencyHealth(ok=True, detail="reachable")
    except Exception as exc:
        database = DependencyHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    ok, detail = await services.broker.check()
    rabbitmq = DependencyHealth(ok=ok, detail=detail[:300])
    return Health(
        status="ok" if database.ok and rabbitmq.ok else "degraded",
        version=__version__,
        database=database,
        rabbitmq=rabbitmq,
        publishing=publishing,
    )

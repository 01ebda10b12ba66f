"""The operator's routes under /admin: jobs, publishing start and stop, and deletes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from ocr_gateway.api.deps import DispatchDep, JobsDep, require_admin_key
from ocr_gateway.api.openapi import JobId, PageNumber, errors
from ocr_gateway.api.schemas import ActionAccepted, Deleted, StartAccepted
from ocr_gateway.db.models import TENANT_NAME_PATTERN
from ocr_gateway.dispatch.control import StartScheduled
from ocr_gateway.dispatch.schemas import DispatchStatus, JobPriority, PriorityChange, RateLimit
from ocr_gateway.jobs.schemas import JobDetail, JobList, JobSummary, PageDetail

# 401 on every route: the key is checked before anything else when one is set.
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=errors(401),
)


@router.get(
    "/jobs", operation_id="admin_list_jobs", response_model=JobList, responses=errors(400, 422)
)
async def list_jobs(
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    tenant: Annotated[
        str | None,
        Query(pattern=TENANT_NAME_PATTERN, description="only this tenant's jobs"),
    ] = None,
) -> JobList:
    """Jobs that are not completed yet, of every tenant (or of `tenant`), newest first."""
    page = await jobs.list_open(limit=limit, cursor=cursor, offset=offset, tenant=tenant)
    return JobList(
        items=[JobSummary.model_validate(job) for job in page.items],
        next_cursor=page.next_cursor,
        limit=limit,
    )


@router.get(
    "/job/{job_id}",
    operation_id="admin_get_job",
    response_model=JobDetail,
    responses=errors(404, 422),
)
async def get_job(jobs: JobsDep, job_id: JobId) -> JobDetail:
    """One job with its counters and pages, whichever its tenant."""
    job, pages = await jobs.get(job_id, scope=None)
    summary = JobSummary.model_validate(job)
    return JobDetail(**summary.model_dump(), pages=[PageDetail.model_validate(p) for p in pages])


def _started(scheduled: StartScheduled) -> StartAccepted:
    return StartAccepted(
        scope=scheduled.scope,
        job_id=scheduled.job_id,
        page_number=scheduled.page_number,
        pending_pages=scheduled.pending_pages,
    )


@router.post(
    "/start",
    operation_id="admin_start_all",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
)
async def start_all(control: DispatchDep) -> StartAccepted:
    """Publish every pending page of every job, until none is left or a stop."""
    return _started(await control.start_all())


@router.post(
    "/start/{job_id}",
    operation_id="admin_start_job",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
    responses=errors(404, 409, 422),
)
async def start_job(control: DispatchDep, job_id: JobId) -> StartAccepted:
    """Publish the pending pages of one job."""
    return _started(await control.start_job(job_id))


@router.post(
    "/start/{job_id}/page/{page_number}",
    operation_id="admin_start_page",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StartAccepted,
    responses=errors(404, 409, 422),
)
async def start_page(control: DispatchDep, job_id: JobId, page_number: PageNumber) -> StartAccepted:
    """Publish one page (a failed page is reset to pending first)."""
    return _started(await control.start_page(job_id, page_number))


@router.post(
    "/stop",
    operation_id="admin_stop_publishing",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def stop_publishing(control: DispatchDep) -> ActionAccepted:
    """Stop publishing in every app process; unconfirmed pages return to pending."""
    cleared = await control.stop()
    return ActionAccepted(action="stop", detail=f"{cleared} start request(s) cancelled")


@router.get("/dispatch", operation_id="admin_dispatch_state", response_model=DispatchStatus)
async def dispatch_state(control: DispatchDep) -> DispatchStatus:
    """Whether an operator's stop is in force, and the publishing rate limit (null: none)."""
    state = await control.state()
    return DispatchStatus(stopped=state.stopped, pages_per_second=state.pages_per_second)


@router.put(
    "/dispatch/rate",
    operation_id="admin_set_dispatch_rate",
    response_model=DispatchStatus,
    responses=errors(422),
)
async def set_dispatch_rate(control: DispatchDep, body: RateLimit) -> DispatchStatus:
    """Cap publishing at `pages_per_second` over every dispatcher together (null: no cap);
    every dispatcher follows within a second."""
    state = await control.set_rate(body.pages_per_second)
    return DispatchStatus(stopped=state.stopped, pages_per_second=state.pages_per_second)


@router.put(
    "/jobs/{job_id}/priority",
    operation_id="admin_set_job_priority",
    response_model=JobPriority,
    responses=errors(404, 409, 422),
)
async def set_job_priority(
    control: DispatchDep, job_id: JobId, body: PriorityChange
) -> JobPriority:
    """Give a job a priority from 0 to 9 (higher first); its pending pages take it at once,
    pages already in the broker keep theirs. 409 for a task, whose pages always go first."""
    changed = await control.set_job_priority(job_id, body.priority)
    return JobPriority(job_id=job_id, priority=body.priority, pending_pages=changed)


@router.delete(
    "/delete/job/{job_id}/page/{page_number}",
    operation_id="admin_delete_page",
    response_model=Deleted,
    responses=errors(404, 422),
)
async def delete_page(jobs: JobsDep, job_id: JobId, page_number: PageNumber) -> Deleted:
    """Remove one page: its PNG and its row; its number joins the job's excluded_pages."""
    await jobs.delete_page(job_id, page_number)
    return Deleted(deleted="page", job_id=job_id, page_number=page_number)


@router.delete(
    "/delete/job/{job_id}",
    operation_id="admin_delete_job",
    response_model=Deleted,
    responses=errors(404, 422),
)
async def delete_job(jobs: JobsDep, job_id: JobId) -> Deleted:
    """Remove one job: its folder under files/ and its rows, whichever its tenant."""
    await jobs.delete_job(job_id, scope=None)
    return Deleted(deleted="job", job_id=job_id)


@router.delete(
    "/delete/jobs",
    operation_id="admin_delete_all_jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def delete_all_jobs(jobs: JobsDep, control: DispatchDep) -> ActionAccepted:
    """Stop publishing, remove every job from files/ and the DB, and purge the pages queue."""
    control.spawn(jobs.delete_all())
    return ActionAccepted(action="delete_all_jobs", detail="scheduled")


@router.delete(
    "/delete/queue",
    operation_id="admin_purge_pages_queue",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActionAccepted,
)
async def purge_pages_queue(control: DispatchDep) -> ActionAccepted:
    """Stop publishing, purge the pages queue, and return queued pages to pending."""
    control.spawn(control.purge_queue())
    return ActionAccepted(action="purge_pages_queue", detail="scheduled")

"""A job's results as files: the result in txt, json, zip or pdf, and each page's image.
Another tenant's job answers 404, as an unknown job does."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.responses import Response

from ocr_gateway.api.deps import CallerDep, ExportsDep, StoreDep
from ocr_gateway.api.openapi import CALLER_ERRORS, JobId, PageNumber, errors
from ocr_gateway.api.stored import stored_response
from ocr_gateway.exports.formats import MEDIA_TYPES, ExportFormat

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=errors(*CALLER_ERRORS))

# A file in the answer: generated clients read it as bytes (text as a string, json as an object).
BINARY = {"schema": {"type": "string", "format": "binary"}}
RESULT_SCHEMAS = {
    ExportFormat.TXT: {"schema": {"type": "string"}},
    ExportFormat.JSON: {"schema": {"type": "object"}},
    ExportFormat.ZIP: BINARY,
    ExportFormat.PDF: BINARY,
}


def _download(job_id: object, fmt: ExportFormat) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{job_id}.{fmt.value}"'}


@router.get(
    "/{job_id}/result",
    operation_id="get_job_result",
    response_class=Response,
    responses={
        200: {
            "description": "The result in the format asked for",
            "content": {MEDIA_TYPES[fmt]: spec for fmt, spec in RESULT_SCHEMAS.items()},
        },
        **errors(404, 409, 422, 503),
    },
)
async def get_job_result(
    exports: ExportsDep,
    store: StoreDep,
    caller: CallerDep,
    job_id: JobId,
    format: Annotated[ExportFormat, Query(description="the result's format")] = ExportFormat.TXT,
    partial: Annotated[
        bool, Query(description="export the pages done so far of a job not finished yet")
    ] = False,
) -> Response:
    """The job's result: `txt` (pages' text in page order, separated by form feeds), `json`
    (`{job_id, pages: [{page_number, status, text, boxes}]}`), `zip` (`pages/0001.png`,
    `pages/0001.txt`, ... and `result.json`) or `pdf` (each page's image with its recognised
    words invisible over it, so they can be selected and searched). Answers 409 with the job's
    status while it is not finished, unless `partial=true`. The pdf and zip are built once and
    kept with the page images until the job changes or is deleted."""
    job = await exports.exportable_job(job_id, partial=partial, scope=caller.scope)
    headers = _download(job_id, format)
    if format.built_as_file:
        built = await exports.export_file(job, format)
        return stored_response(store, built, headers)
    stream = (
        exports.stream_txt(job_id) if format is ExportFormat.TXT else exports.stream_json(job_id)
    )
    return StreamingResponse(stream, media_type=format.media_type, headers=headers)


@router.get(
    "/{job_id}/pages/{page_number}/image",
    operation_id="get_job_page_image",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The page's PNG", "content": {"image/png": BINARY}},
        **errors(404, 422, 503),
    },
)
async def get_job_page_image(
    exports: ExportsDep, store: StoreDep, caller: CallerDep, job_id: JobId, page_number: PageNumber
) -> StreamingResponse:
    """The page's image, as rendered and sent to OCR (the boxes' pixels are this image's)."""
    page = await exports.page_image(job_id, page_number, scope=caller.scope)
    return stored_response(store, page)

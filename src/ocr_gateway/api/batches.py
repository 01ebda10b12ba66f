"""The batch route: `POST /jobs` takes one or more `files` parts, each a PDF or an image, and
answers 202 with one job a file, in the order sent. All or nothing: a refused file is named by
its `index`, and nothing of the batch is kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from ocr_gateway.api.deps import CallerDep, UploadsDep
from ocr_gateway.api.openapi import UPLOAD_ERRORS, errors
from ocr_gateway.api.schemas import BatchAccepted, UploadAccepted

router = APIRouter(tags=["jobs"])


def _files_body() -> dict[str, Any]:
    """OpenAPI for the streamed batch body (the route reads it itself, FastAPI does not)."""
    files = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "format": "binary"},
        "description": "One part per file, each a PDF or a PNG, JPEG, TIFF, BMP or WebP image;"
        " a file's type is read from its bytes. At most MAX_FILES_PER_REQUEST files.",
    }
    schema = {"type": "object", "required": ["files"], "properties": {"files": files}}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema}},
        }
    }


@router.post(
    "/jobs",
    operation_id="submit_jobs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=errors(*UPLOAD_ERRORS),
    openapi_extra=_files_body(),
)
async def submit_jobs(uploads: UploadsDep, caller: CallerDep, request: Request) -> BatchAccepted:
    """Submit a batch of files; each becomes a job whose pages are rendered in the background.

    A refusal of any file keeps none of them, and its JSON answer names the file's `index`.
    """
    accepted = await uploads.accept_batch(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        caller,
    )
    return BatchAccepted(
        jobs=[
            UploadAccepted(
                job_id=upload.job_id,
                tenant=caller.tenant,
                filename=upload.filename,
                media_type=upload.media_type.value,
                total_page_number=upload.total_page_number,
            )
            for upload in accepted
        ]
    )

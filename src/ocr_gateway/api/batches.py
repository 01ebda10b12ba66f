"""The batch route: `POST /jobs` takes one or more `files` parts, each a PDF or an image, and
answers 202 with one job a file, in the order sent. All or nothing: a refused file is named by
its `index`, and nothing of the batch is kept. Each file is deduplicated on its own; the answer
is 200 when every file was a duplicate (nothing new was made), else 202."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from ocr_gateway.api.deps import CallerDep, UploadsDep
from ocr_gateway.api.openapi import JOB_UPLOAD_ERRORS, errors
from ocr_gateway.api.schemas import BatchAccepted
from ocr_gateway.api.uploads import (
    DedupQuery,
    TextLayerQuery,
    accepted_response,
    upload_options_query,
    with_option_fields,
)

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
    responses={
        200: {
            "model": BatchAccepted,
            "description": "Every file was uploaded before by this tenant with the same"
            " options: their jobs, each `deduplicated: true`; nothing new is made",
        },
        202: {
            "model": BatchAccepted,
            "description": "At least one new job; files uploaded before answer their"
            " existing job (`deduplicated: true`)",
        },
        **errors(*JOB_UPLOAD_ERRORS),
    },
    openapi_extra=with_option_fields(_files_body()),
)
async def submit_jobs(
    uploads: UploadsDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    text_layer: TextLayerQuery = None,
    dedup: DedupQuery = None,
) -> BatchAccepted:
    """Submit a batch of files; each becomes a job whose pages are rendered in the background.

    A refusal of any file keeps none of them, and its JSON answer names the file's `index`.
    """
    accepted = await uploads.accept_batch(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        caller,
        query=upload_options_query(text_layer, dedup),
    )
    if all(upload.deduplicated for upload in accepted):
        response.status_code = status.HTTP_200_OK
    return BatchAccepted(jobs=[accepted_response(upload, caller.tenant) for upload in accepted])

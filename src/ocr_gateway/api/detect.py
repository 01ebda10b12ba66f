"""Detect → edit → recognise, at the root paths of the detect-first contract that clients
already call (docs/detect.md): `/v1/ocr/jobs`, its upload, its boxes, its recognition.

A job is the caller's tenant's; another tenant's job is not found, as an unknown one is. A
call in the wrong status answers 409 with that `status`; a bad PATCH answers 422 with the
`path` of the bad field and changes nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel

from ocr_gateway.api.deps import CallerDep, DetectDep
from ocr_gateway.api.openapi import CALLER_ERRORS, UPLOAD_ERRORS, errors, multipart_body
from ocr_gateway.detect.schemas import (
    DetectJobCreated,
    DetectJobOut,
    DetectPatch,
    DetectResult,
)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its nested models written in place: the route reads its
    body itself, so the OpenAPI document has no component for them to refer to."""
    schema = model.model_json_schema()
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


# Every route validates its job id or the X-Tenant-Id header: 422 in the one error shape.
router = APIRouter(prefix="/v1/ocr/jobs", tags=["detect"], responses=errors(*CALLER_ERRORS, 422))


@router.post(
    "",
    operation_id="detect_job_create",
    status_code=status.HTTP_201_CREATED,
    response_model=DetectJobCreated,
)
async def create_job(detect: DetectDep, caller: CallerDep) -> DetectJobCreated:
    """A new job, `PENDING_UPLOAD`: send its file to `/upload`."""
    return await detect.create(caller)


@router.post(
    "/{job_id}/upload",
    operation_id="detect_job_upload",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DetectJobCreated,
    responses=errors(404, 409, 429, *UPLOAD_ERRORS),
    openapi_extra=multipart_body("The PDF or image to detect text boxes on, as `file`"),
)
async def upload_file(
    job_id: uuid.UUID, detect: DetectDep, caller: CallerDep, request: Request
) -> DetectJobCreated:
    """The job's one file (multipart `file`): its pages are rendered and their text boxes
    detected on the workers, and the job becomes `DETECT_DONE`."""
    return await detect.upload(
        job_id,
        caller,
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
    )


@router.get(
    "/{job_id}", operation_id="detect_job_get", response_model=DetectJobOut, responses=errors(404)
)
async def get_job(job_id: uuid.UUID, detect: DetectDep, caller: CallerDep) -> DetectJobOut:
    """The job: its status, its `detect_result` once detected, its `ocr_result` once DONE."""
    return await detect.view(job_id, caller)


@router.get(
    "/{job_id}/detect",
    operation_id="detect_job_boxes",
    response_model=DetectResult,
    responses=errors(404, 409),
)
async def get_boxes(job_id: uuid.UUID, detect: DetectDep, caller: CallerDep) -> DetectResult:
    """The job's `detect_result` (409 before detection is done)."""
    return await detect.detect_result(job_id, caller)


@router.patch(
    "/{job_id}/detect",
    operation_id="detect_job_replace_boxes",
    response_model=DetectResult,
    responses=errors(404, 409, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(DetectPatch)}},
        }
    },
)
async def replace_boxes(
    job_id: uuid.UUID, detect: DetectDep, caller: CallerDep, request: Request
) -> DetectResult:
    """Replace the whole `detect_result` (a page not listed keeps no boxes); a box needs only
    `points`, four `[x, y]` or `[x0, y0, x1, y1]`. 422 names the bad field's `path`."""
    return await detect.replace_boxes(
        job_id, caller, request.stream(), request.headers.get("content-length")
    )


@router.post(
    "/{job_id}/run-ocr",
    operation_id="detect_job_run_ocr",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DetectJobCreated,
    responses=errors(404, 409),
)
async def run_ocr(job_id: uuid.UUID, detect: DetectDep, caller: CallerDep) -> DetectJobCreated:
    """Recognise exactly the stored boxes; the job becomes `OCR_RUNNING`, then `DONE`."""
    return await detect.run_ocr(job_id, caller)

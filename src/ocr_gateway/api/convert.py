"""Tables to XLSX: `POST /convert/batch` takes one or more `files` (images and PDFs) and answers
202 with the one job they make; `GET /download/{file_id}` serves the workbook of its tables once
the job is done (the job lists it under `downloads`). Another tenant's file answers 404, as an
unknown file does."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import StreamingResponse

from ocr_gateway.api.deps import CallerDep, ConvertDep, StoreDep
from ocr_gateway.api.openapi import CALLER_ERRORS, JOB_UPLOAD_ERRORS, errors
from ocr_gateway.api.stored import attachment, stored_response
from ocr_gateway.api.uploads import (
    DedupQuery,
    TextLayerQuery,
    upload_options_query,
    with_option_fields,
)
from ocr_gateway.convert.schemas import ConvertAccepted
from ocr_gateway.convert.workbook import XLSX_MEDIA_TYPE

router = APIRouter(tags=["convert"], responses=errors(*CALLER_ERRORS))

BINARY = {"schema": {"type": "string", "format": "binary"}}
FileId = Annotated[uuid.UUID, Path(description="The download's UUID, from the job's `downloads`")]


def _files_body() -> dict[str, Any]:
    """OpenAPI for the streamed batch body (the route reads it itself, FastAPI does not)."""
    files = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "format": "binary"},
        "description": "One part per file, each a PDF or a PNG, JPEG, TIFF, BMP or WebP image,"
        " in the order their pages take in the job; a file's type is read from its bytes. At"
        " most MAX_FILES_PER_REQUEST files.",
    }
    schema = {"type": "object", "required": ["files"], "properties": {"files": files}}
    body = {
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}
    }
    return with_option_fields(body)


@router.post(
    "/convert/batch",
    operation_id="convert_batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ConvertAccepted,
    responses={
        200: {
            "model": ConvertAccepted,
            "description": "The same files with the same options were sent before by this"
            " tenant: their job, `deduplicated: true`; nothing new is made",
        },
        202: {
            "model": ConvertAccepted,
            "description": "The batch's job, rendered in the background",
        },
        **errors(*JOB_UPLOAD_ERRORS),
    },
    openapi_extra=_files_body(),
)
async def convert_batch(
    convert: ConvertDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    text_layer: TextLayerQuery = None,
    dedup: DedupQuery = None,
) -> ConvertAccepted:
    """Make one job of a batch of table screenshots, scans and PDFs: its pages are every page
    of every file, in order, and they are searched for tables. `text_layer` defaults to
    `auto` here: a born-digital PDF page's tables and text are read from its text layer, with
    no OCR. Published by an operator's start, or at once with DISPATCH_MODE=auto. Once the job
    is done, `GET /jobs/{job_id}` lists its workbook under `downloads`.

    All or nothing: a refused file keeps nothing of the batch, and its JSON answer names the
    file's `index`."""
    accepted = await convert.accept(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        caller,
        upload_options_query(text_layer, dedup),
    )
    if accepted.deduplicated:
        response.status_code = status.HTTP_200_OK
    return accepted


@router.get(
    "/download/{file_id}",
    operation_id="download_file",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The workbook of the job's tables",
            "content": {XLSX_MEDIA_TYPE: BINARY},
        },
        **errors(404, 409, 422, 503),
    },
)
async def download_file(
    convert: ConvertDep, store: StoreDep, caller: CallerDep, file_id: FileId
) -> StreamingResponse:
    """A file made from a job: the XLSX workbook of a `/convert/batch` job's tables, one sheet a
    table (`<file> p<page> t<n>`) and one sheet of text lines for a page without a table
    (`<file> p<page> text`). Built at its first download and kept next to the job's pages.
    404 for an unknown file or another tenant's; 409 (with the job's `status`) while its job
    is not done."""
    workbook = await convert.workbook(file_id, scope=caller.scope)
    return stored_response(store, workbook.stored, attachment(workbook.filename))

"""The upload routes: `/ocrpdf` and `/ocrimage` stream a file in and answer 202 with its job,
or 200 with the tenant's live job when the same bytes with the same options came before."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from ocr_gateway.api.deps import CallerDep, UploadsDep
from ocr_gateway.api.openapi import JOB_UPLOAD_ERRORS, errors, multipart_body
from ocr_gateway.api.schemas import UploadAccepted
from ocr_gateway.dispatch.schemas import MAX_JOB_PRIORITY
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.service import AcceptedUpload, UploadService

router = APIRouter(tags=["uploads"], responses=errors(*JOB_UPLOAD_ERRORS))

TEXT_LAYER_HELP = (
    "`auto`: a PDF page whose own text layer passes the quality check is read from it and"
    " never OCR'd (its `source` is `text_layer`); `off`: every page goes to OCR. Default:"
    " OCR_GATEWAY_TEXT_LAYER. Also accepted as a form field, which wins."
)
DEDUP_HELP = (
    "`false`: always make a new job, even for bytes and options this tenant sent before."
    " Default `true`. Also accepted as a form field, which wins."
)
TextLayerQuery = Annotated[str | None, Query(description=TEXT_LAYER_HELP)]
DedupQuery = Annotated[str | None, Query(description=DEDUP_HELP)]


def upload_options_query(text_layer: str | None, dedup: str | None) -> dict[str, str]:
    """The option query parameters given, for the upload service to read with its fields."""
    given = {"text_layer": text_layer, "dedup": dedup}
    return {name: value for name, value in given.items() if value is not None}


def with_option_fields(extra: dict[str, Any]) -> dict[str, Any]:
    """A multipart body's OpenAPI with the option form fields beside its file(s)."""
    schema = extra["requestBody"]["content"]["multipart/form-data"]["schema"]
    schema["properties"]["text_layer"] = {
        "type": "string",
        "enum": ["auto", "off"],
        "description": TEXT_LAYER_HELP,
    }
    schema["properties"]["dedup"] = {
        "type": "string",
        "enum": ["true", "false"],
        "description": DEDUP_HELP,
    }
    schema["properties"]["priority"] = {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_JOB_PRIORITY,
        "default": 0,
        "description": "The job's publishing priority, higher first (form field only); a"
        " duplicate keeps the first job's priority",
    }
    return extra


def accepted_response(accepted: AcceptedUpload, tenant: str) -> UploadAccepted:
    return UploadAccepted(
        job_id=accepted.job_id,
        tenant=tenant,
        status=accepted.status,
        filename=accepted.filename,
        media_type=accepted.media_type.value,
        total_page_number=accepted.total_page_number,
        deduplicated=accepted.deduplicated,
    )


DEDUPLICATED_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": UploadAccepted,
        "description": "The same bytes with the same options were uploaded before by this"
        " tenant: their job, `deduplicated: true`; nothing new is made",
    },
    202: {"model": UploadAccepted, "description": "A new job, rendered in the background"},
}


async def _accept(
    uploads: UploadService,
    caller: Caller,
    request: Request,
    response: Response,
    accepted: frozenset[MediaType],
    query: dict[str, str],
) -> UploadAccepted:
    upload = await uploads.accept_upload(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        accepted,
        caller,
        query=query,
    )
    if upload.deduplicated:
        response.status_code = status.HTTP_200_OK
    return accepted_response(upload, caller.tenant)


@router.post(
    "/ocrpdf",
    operation_id="upload_pdf",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses=DEDUPLICATED_RESPONSE,
    openapi_extra=with_option_fields(multipart_body("A PDF document")),
)
async def upload_pdf(
    uploads: UploadsDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    text_layer: TextLayerQuery = None,
    dedup: DedupQuery = None,
) -> UploadAccepted:
    """Upload a PDF; its pages are rendered to PNG in the background (and, with
    `text_layer=auto`, read from their own text layer when it is good)."""
    query = upload_options_query(text_layer, dedup)
    return await _accept(uploads, caller, request, response, PDF_TYPES, query)


@router.post(
    "/ocrimage",
    operation_id="upload_image",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses=DEDUPLICATED_RESPONSE,
    openapi_extra=with_option_fields(
        multipart_body("A PNG, JPEG, TIFF (multi-page too), BMP or WebP image")
    ),
)
async def upload_image(
    uploads: UploadsDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    text_layer: TextLayerQuery = None,
    dedup: DedupQuery = None,
) -> UploadAccepted:
    """Upload an image; each frame becomes one page (`text_layer` is accepted and has no
    effect: an image has no text layer)."""
    query = upload_options_query(text_layer, dedup)
    return await _accept(uploads, caller, request, response, IMAGE_TYPES, query)

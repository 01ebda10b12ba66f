"""The upload routes: `/ocrpdf` and `/ocrimage` stream a file in and answer 202 with its job."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from ocr_gateway.api.deps import CallerDep, UploadsDep
from ocr_gateway.api.openapi import UPLOAD_ERRORS, errors, multipart_body
from ocr_gateway.api.schemas import UploadAccepted
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.service import UploadService

router = APIRouter(tags=["uploads"], responses=errors(*UPLOAD_ERRORS))


async def _accept(
    uploads: UploadService, caller: Caller, request: Request, accepted: frozenset[MediaType]
) -> UploadAccepted:
    upload = await uploads.accept_upload(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        accepted,
        caller,
    )
    return UploadAccepted(
        job_id=upload.job_id,
        tenant=caller.tenant,
        filename=upload.filename,
        media_type=upload.media_type.value,
        total_page_number=upload.total_page_number,
    )


@router.post(
    "/ocrpdf",
    operation_id="upload_pdf",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    openapi_extra=multipart_body("A PDF document"),
)
async def upload_pdf(uploads: UploadsDep, caller: CallerDep, request: Request) -> UploadAccepted:
    """Upload a PDF; its pages are rendered to PNG in the background."""
    return await _accept(uploads, caller, request, PDF_TYPES)


@router.post(
    "/ocrimage",
    operation_id="upload_image",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    openapi_extra=multipart_body("A PNG, JPEG, TIFF (multi-page too), BMP or WebP image"),
)
async def upload_image(uploads: UploadsDep, caller: CallerDep, request: Request) -> UploadAccepted:
    """Upload an image; each frame becomes one page."""
    return await _accept(uploads, caller, request, IMAGE_TYPES)

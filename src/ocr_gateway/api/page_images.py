"""`GET /api/v1/page-images/{job_id}/{page_number}`: a page's PNG for an OCR worker, by the
signed URL the dispatcher put in its page message (`MESSAGE_IMAGES=url` on local storage).

The signature is the credential, so the route takes no key: the URL names one page until it
expires, and a bad, missing or expired signature is refused with 403 and the reason.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from ocr_gateway.api.deps import SettingsDep, StoreDep
from ocr_gateway.api.openapi import JobId, PageNumber, errors
from ocr_gateway.core.errors import NotFound
from ocr_gateway.dispatch.page_urls import SIGNATURE_CHARS, PageUrlSigner, SignatureRefused
from ocr_gateway.storage.keys import page_key

router = APIRouter(tags=["workers"])

BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/page-images/{job_id}/{page_number}",
    operation_id="get_signed_page_image",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The page's PNG", "content": {"image/png": BINARY}},
        **errors(403, 404, 422),
    },
)
async def get_signed_page_image(
    settings: SettingsDep,
    store: StoreDep,
    job_id: JobId,
    page_number: PageNumber,
    expires: Annotated[str | None, Query(max_length=20, description="Unix seconds")] = None,
    signature: Annotated[
        str | None, Query(max_length=2 * SIGNATURE_CHARS, description="HMAC-SHA256, hex")
    ] = None,
) -> StreamingResponse:
    """The page's PNG, streamed from the store, for whoever holds the URL's signature."""
    signer = PageUrlSigner.from_settings(settings)
    if signer is None:
        raise SignatureRefused("signed page URLs are off: no MESSAGE_IMAGE_URL_SECRET is set")
    signer.check(job_id, page_number, expires, signature)
    key = page_key(job_id, page_number)
    size = await store.size(key)
    if size is None:
        raise NotFound(f"page {page_number} of job {job_id} has no image")
    return StreamingResponse(
        store.iter_bytes(key),
        media_type="image/png",
        headers={"Content-Length": str(size), "Cache-Control": "private, no-store"},
    )

"""`/images`, in the shapes of the thumbnail service that clients already code against: upload
an image, read its status and URLs, fetch its original and its thumbnails, delete it.

The app serves this router twice, at the root (the paths those clients call; left out of the
OpenAPI document, as it is the same operations again) and under /api/v1. An image is the
caller's tenant's; another tenant's image is not found, as an unknown one is.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse
from starlette.responses import Response

from ocr_gateway.api.deps import CallerDep, ThumbnailsDep
from ocr_gateway.api.openapi import CALLER_ERRORS, UPLOAD_ERRORS, errors, multipart_body
from ocr_gateway.api.stored import stored_response
from ocr_gateway.db.models import ImageStatus, StoredImage
from ocr_gateway.storage import ArtefactStore
from ocr_gateway.thumbnails.making import THUMBNAIL_MEDIA_TYPE
from ocr_gateway.thumbnails.schemas import ImageAccepted, ImageBox, ImageDeleted, ImageView
from ocr_gateway.thumbnails.service import ServedFile
from ocr_gateway.uploads.media import IMAGE_TYPES

router = APIRouter(prefix="/images", tags=["images"], responses=errors(*CALLER_ERRORS))
# The same handlers at the root paths, left out of the OpenAPI document (listed once, above).
root_router = APIRouter(prefix="/images", include_in_schema=False)

# An image's files never change under its id: caches may keep them for a year without asking.
# `private`: they are a tenant's, so a shared cache must not hand them to another client.
CACHE_CONTROL = "private, max-age=31536000, immutable"
BINARY = {"schema": {"type": "string", "format": "binary"}}

ImageId = Annotated[uuid.UUID, Path(description="The image's id")]


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 says for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags


def cached_file(request: Request, store: ArtefactStore, served: ServedFile) -> Response:
    """The file, streamed from the store, with its ETag and a long Cache-Control, or 304 when
    the client has it."""
    headers = {"ETag": served.etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request.headers.get("if-none-match"), served.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return stored_response(store, served.stored, headers)


def cached_bytes(request: Request, data: bytes, media_type: str, etag: str) -> Response:
    """Bytes with their ETag and a long Cache-Control, or 304 when the client has them."""
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if not_modified(request.headers.get("if-none-match"), etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def image_view(request: Request, image: StoredImage) -> ImageView:
    """The image as its clients read it; URLs are absolute, at the root paths."""
    base = f"{str(request.base_url).rstrip('/')}/images/{image.image_id}"
    thumbnails = None
    if image.status == ImageStatus.DONE:
        thumbnails = {box: f"{base}/thumbnails/{box.value}" for box in ImageBox}
    return ImageView(
        id=image.image_id,
        status=ImageStatus(image.status),
        original_url=f"{base}/original",
        thumbnails=thumbnails,
        error=image.error if image.status == ImageStatus.FAILED else None,
        filename=image.filename,
        media_type=image.media_type,
        width=image.width,
        height=image.height,
    )


@router.post(
    "",
    operation_id="upload_thumbnail_image",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImageAccepted,
    responses={
        200: {"model": ImageAccepted, "description": "The same bytes sent before: that image"},
        **errors(*UPLOAD_ERRORS),
    },
    openapi_extra=multipart_body("A PNG, JPEG, TIFF, BMP or WebP image"),
)
@root_router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ImageAccepted)
async def upload_image(
    thumbnails: ThumbnailsDep,
    caller: CallerDep,
    request: Request,
    dedup: Annotated[
        str | None,
        Query(description="`false`: a new image even if the same bytes were sent before"),
    ] = None,
) -> Any:
    """Upload an image (multipart field `file`); answers 202 with its `id` and `PROCESSING`.
    Its 100x100, 300x300 and 1200x1200 thumbnails are made at once, no OCR and no start
    needed; `GET /images/{id}` says when they are DONE. The same bytes sent again by the same
    tenant answer 200 with that image and `deduplicated: true` (unless it FAILED)."""
    accepted = await thumbnails.accept(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        caller,
        dedup=dedup,
    )
    image = accepted.image
    if accepted.deduplicated:
        body = ImageAccepted(
            id=image.image_id,
            status=ImageStatus(image.status),
            message="the same image was sent before; this is it",
            deduplicated=True,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    return ImageAccepted(
        id=image.image_id,
        status=ImageStatus.PROCESSING,
        message="image accepted; its thumbnails are being made",
    )


@router.get(
    "/{image_id}",
    operation_id="get_thumbnail_image",
    response_model=ImageView,
    responses=errors(404, 422),
)
@root_router.get("/{image_id}", response_model=ImageView)
async def get_image(
    thumbnails: ThumbnailsDep, caller: CallerDep, request: Request, image_id: ImageId
) -> ImageView:
    """The image's status (`PROCESSING`, `DONE` or `FAILED` with `error`), its original's URL
    and, once DONE, its thumbnails' URLs by box (null before)."""
    return image_view(request, await thumbnails.get(image_id, scope=caller.scope))


@router.get(
    "/{image_id}/original",
    operation_id="get_thumbnail_image_original",
    response_class=Response,
    responses={
        200: {
            "description": "The image as uploaded, with its own media type",
            "content": {media_type.value: BINARY for media_type in sorted(IMAGE_TYPES)},
        },
        **errors(404, 422),
    },
)
@root_router.get("/{image_id}/original", response_class=Response)
async def get_original(
    thumbnails: ThumbnailsDep, caller: CallerDep, request: Request, image_id: ImageId
) -> Response:
    """The original, with a strong ETag (304 on a matching If-None-Match) and a year's
    Cache-Control."""
    served = await thumbnails.original(image_id, scope=caller.scope)
    return cached_file(request, thumbnails.store, served)


@router.get(
    "/{image_id}/thumbnails/{size}",
    operation_id="get_thumbnail_image_thumbnail",
    response_class=Response,
    responses={
        200: {"description": "The thumbnail (WebP)", "content": {THUMBNAIL_MEDIA_TYPE: BINARY}},
        **errors(404, 409, 422),
    },
)
@root_router.get("/{image_id}/thumbnails/{size}", response_class=Response)
async def get_thumbnail(
    thumbnails: ThumbnailsDep,
    caller: CallerDep,
    request: Request,
    image_id: ImageId,
    size: Annotated[ImageBox, Path(description="The box: 100x100, 300x300 or 1200x1200")],
) -> Response:
    """The thumbnail in the box `size` (WebP, aspect kept, never enlarged), with a strong
    ETag (304 on a matching If-None-Match) and a year's Cache-Control. 409 while the image
    is PROCESSING, and when it FAILED."""
    served = await thumbnails.thumbnail(image_id, size, scope=caller.scope)
    return cached_file(request, thumbnails.store, served)


@router.delete(
    "/{image_id}",
    operation_id="delete_thumbnail_image",
    response_model=ImageDeleted,
    responses=errors(404, 422),
)
@root_router.delete("/{image_id}", response_model=ImageDeleted)
async def delete_image(
    thumbnails: ThumbnailsDep, caller: CallerDep, image_id: ImageId
) -> ImageDeleted:
    """Delete the image, its original and its thumbnails; the same bytes sent again make a
    new image."""
    await thumbnails.delete(image_id, scope=caller.scope)
    return ImageDeleted(id=image_id)

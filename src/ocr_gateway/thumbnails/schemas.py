"""The shapes of `/images`, as the thumbnail service's clients read them."""

from __future__ import annotations

import enum
import uuid

from pydantic import BaseModel, Field

from ocr_gateway.db.models import ImageStatus


class ImageBox(enum.StrEnum):
    """A thumbnail's box, by the name its URL carries."""

    SMALL = "100x100"
    MEDIUM = "300x300"
    LARGE = "1200x1200"


class PageThumbnailSize(enum.IntEnum):
    """A page thumbnail's box: `size` by `size` pixels."""

    SMALL = 100
    MEDIUM = 300
    LARGE = 1200


class ImageAccepted(BaseModel):
    id: uuid.UUID
    status: ImageStatus
    message: str
    deduplicated: bool = Field(
        default=False,
        description="True when the tenant had sent the same bytes before: this is that image"
        " (answered 200, not 202)",
    )


class ImageView(BaseModel):
    id: uuid.UUID
    status: ImageStatus
    original_url: str
    thumbnails: dict[ImageBox, str] | None = Field(
        description="Each box's URL once DONE; null while PROCESSING and when FAILED"
    )
    error: str | None = Field(default=None, description="Why the image FAILED; null otherwise")
    filename: str
    media_type: str
    width: int | None = Field(
        default=None, description="The original's width as displayed (EXIF orientation applied)"
    )
    height: int | None = None


class ImageDeleted(BaseModel):
    deleted: bool = True
    id: uuid.UUID

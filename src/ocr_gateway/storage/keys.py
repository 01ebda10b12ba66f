"""The one definition of every artefact's key: `/`-separated, relative, built from ids only.

The local backend maps a key to `FILES_DIR/<key>`, so `<job_id>/<n>.png` is the page PNG at
`files/<job_id>/<n>.png`, as it has always been; the S3 backend stores it as
`S3_PREFIX + key`.
"""

from __future__ import annotations

import uuid

# `/images` uploads (ocr_gateway.thumbnails) live under their own prefix, not a job's:
# deleting every job leaves them alone.
IMAGES_PREFIX = "images/"
# A job's page thumbnails: `<job_id>/thumbnails/<page_number>-<size>.webp`.
PAGE_THUMBNAILS = "thumbnails/"


def job_prefix(job_id: uuid.UUID) -> str:
    """Every artefact of one job starts with this; deleting the job deletes the prefix."""
    return f"{job_id}/"


def page_key(job_id: uuid.UUID, page_number: int) -> str:
    """A rendered page's PNG."""
    return f"{job_id}/{page_number}.png"


def job_artefact_key(job_id: uuid.UUID, name: str) -> str:
    """Another artefact of a job (an export, a workbook, a detect result, a thumbnail),
    named by its owner; `name` is built by the gateway, never taken from a client."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"bad artefact name {name!r}")
    return f"{job_id}/{name}"


def image_key(name: str) -> str:
    """An `/images` upload's original or thumbnail."""
    return f"{IMAGES_PREFIX}{name}"


def page_thumbnail_key(job_id: uuid.UUID, page_number: int, size: int) -> str:
    """A job page's WebP thumbnail, made at its first request."""
    return f"{job_id}/{PAGE_THUMBNAILS}{page_number}-{size}.webp"


def page_thumbnails_prefix(job_id: uuid.UUID, page_number: int) -> str:
    """Every thumbnail of one page (deleted with the page)."""
    return f"{job_id}/{PAGE_THUMBNAILS}{page_number}-"


def image_prefix(image_id: uuid.UUID) -> str:
    """An `/images` upload's original and thumbnails."""
    return f"{IMAGES_PREFIX}{image_id}/"


def job_of(key: str) -> uuid.UUID | None:
    """The job a key belongs to, or None for a key outside every job (`images/...`)."""
    head = key.split("/", 1)[0]
    try:
        return uuid.UUID(head)
    except ValueError:
        return None

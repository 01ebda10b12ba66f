"""Queries of `/images`: the image rows, their outcome, and the leases that let another process
take up an image whose process died."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import ImageStatus, StoredImage


def _of_tenant(image_id: uuid.UUID, tenant: str | None) -> Any:
    query = select(StoredImage).where(StoredImage.image_id == image_id)
    return query if tenant is None else query.where(StoredImage.tenant == tenant)


async def get_image(
    session: AsyncSession, image_id: uuid.UUID, *, tenant: str | None
) -> StoredImage | None:
    """The image, if it exists (and belongs to `tenant`, when one is given)."""
    found: StoredImage | None = await session.scalar(_of_tenant(image_id, tenant))
    return found


async def insert_image(
    session: AsyncSession,
    *,
    image_id: uuid.UUID,
    tenant: str,
    filename: str,
    media_type: str,
    size_bytes: int,
    sha256: bytes,
    dedup_key: bytes | None,
    lease_s: float,
) -> uuid.UUID | None:
    """Insert a PROCESSING image leased to this process; None if the tenant already has a live
    image with this dedup key (the unique index decides, so two racing uploads insert one)."""
    statement = (
        pg_insert(StoredImage)
        .values(
            image_id=image_id,
            tenant=tenant,
            filename=filename,
            media_type=media_type,
            size_bytes=size_bytes,
            sha256=sha256,
            status=ImageStatus.PROCESSING,
            dedup_key=dedup_key,
            attempts=1,
            lease_until=func.now() + dt.timedelta(seconds=lease_s),
        )
        .on_conflict_do_nothing(
            index_elements=["tenant", "dedup_key"],
            index_where=text(f"dedup_key IS NOT NULL AND status <> {ImageStatus.FAILED.sql}"),
        )
        .returning(StoredImage.image_id)
    )
    inserted: uuid.UUID | None = await session.scalar(statement)
    return inserted


async def live_image_by_key(
    session: AsyncSession, tenant: str, dedup_key: bytes
) -> StoredImage | None:
    """The tenant's image with this key that has not FAILED, if any."""
    found: StoredImage | None = await session.scalar(
        select(StoredImage).where(
            StoredImage.tenant == tenant,
            StoredImage.dedup_key == dedup_key,
            StoredImage.status != ImageStatus.FAILED,
        )
    )
    return found


async def finish_image(
    session: AsyncSession,
    image_id: uuid.UUID,
    *,
    width: int,
    height: int,
    thumbnails: dict[str, dict[str, Any]],
) -> bool:
    """PROCESSING → DONE with the thumbnails; False if the image is gone or already finished."""
    result = await session.execute(
        update(StoredImage)
        .where(StoredImage.image_id == image_id, StoredImage.status == ImageStatus.PROCESSING)
        .values(
            status=ImageStatus.DONE,
            width=width,
            height=height,
            thumbnails=thumbnails,
            lease_until=None,
            updated_at=func.now(),
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def fail_image(session: AsyncSession, image_id: uuid.UUID, reason: str) -> bool:
    """PROCESSING → FAILED with its reason; False if the image is gone or already finished."""
    result = await session.execute(
        update(StoredImage)
        .where(StoredImage.image_id == image_id, StoredImage.status == ImageStatus.PROCESSING)
        .values(status=ImageStatus.FAILED, error=reason, lease_until=None, updated_at=func.now())
    )
    return bool(getattr(result, "rowcount", 0))


async def claim_unfinished(
    session: AsyncSession, *, lease_s: float, limit: int = 16
) -> list[tuple[uuid.UUID, int]]:
    """Take over PROCESSING images whose lease ran out (their process died or was restarted):
    (image_id, attempts so far, this one included)."""
    rows = (
        await session.execute(
            text(
                f"""
                UPDATE images i
                   SET lease_until = now() + make_interval(secs => :lease),
                       attempts = i.attempts + 1,
                       updated_at = now()
                  FROM (SELECT image_id FROM images
                         WHERE status = {ImageStatus.PROCESSING.sql}
                           AND (lease_until IS NULL OR lease_until < now())
                         ORDER BY created_at
                         LIMIT :limit
                           FOR UPDATE SKIP LOCKED) c
                 WHERE i.image_id = c.image_id
             RETURNING i.image_id, i.attempts
                """
            ),
            {"lease": lease_s, "limit": limit},
        )
    ).all()
    return [(row.image_id, row.attempts) for row in rows]


async def renew_leases(
    session: AsyncSession, image_ids: Sequence[uuid.UUID], *, lease_s: float
) -> None:
    await session.execute(
        update(StoredImage)
        .where(StoredImage.image_id.in_(image_ids), StoredImage.status == ImageStatus.PROCESSING)
        .values(lease_until=func.now() + dt.timedelta(seconds=lease_s))
    )


async def release_leases(session: AsyncSession, image_ids: Sequence[uuid.UUID]) -> None:
    """Hand images back at shutdown, so that the next process takes them up at once."""
    await session.execute(
        update(StoredImage)
        .where(
            StoredImage.image_id.in_(image_ids),
            StoredImage.status == ImageStatus.PROCESSING,
        )
        .values(lease_until=func.now())
    )


async def delete_image(session: AsyncSession, image_id: uuid.UUID, *, tenant: str | None) -> bool:
    statement = delete(StoredImage).where(StoredImage.image_id == image_id)
    if tenant is not None:
        statement = statement.where(StoredImage.tenant == tenant)
    result = await session.execute(statement.returning(StoredImage.image_id))
    return result.first() is not None


async def all_image_ids(session: AsyncSession) -> set[uuid.UUID]:
    return set(await session.scalars(select(StoredImage.image_id)))

"""Tables `jobs`, `pages` and `dispatch_requests`, and the status enums with their transitions."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy import (
    text as sql,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobStatus(enum.StrEnum):
    """pending → queued → completed | failed (see README, "Statuses")."""

    PENDING = "pending"
    QUEUED = "queued"
    COMPLETED = "completed"
    FAILED = "failed"


class PageStatus(enum.StrEnum):
    """pending → publishing → queued → done | failed; publishing → pending on stop or expiry."""

    PENDING = "pending"
    PUBLISHING = "publishing"
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    filename: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    total_page_number: Mapped[int] = mapped_column(Integer)
    excluded_pages: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), default=list, server_default=sql("'{}'")
    )
    rendered_pages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completed_pages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_pages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    render_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    render_lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index(
            "ix_jobs_open_created",
            sql("created_at DESC"),
            sql("job_id DESC"),
            postgresql_where=sql("status <> 'completed'"),
        ),
    )


class Page(Base):
    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.job_id", ondelete="CASCADE")
    )
    page_number: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PageStatus.PENDING)
    text: Mapped[str | None] = mapped_column(Text)
    boxes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("job_id", "page_number", name="uq_pages_job_page"),
        Index("ix_pages_pending", "id", postgresql_where=sql("status = 'pending'")),
        Index(
            "ix_pages_publishing_lease",
            "lease_until",
            postgresql_where=sql("status = 'publishing'"),
        ),
        Index("ix_pages_queued", "id", postgresql_where=sql("status = 'queued'")),
    )


class DispatchRequest(Base):
    """An operator's start: all pending pages, one job's, or one page. Deleted by a stop."""

    __tablename__ = "dispatch_requests"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.job_id", ondelete="CASCADE")
    )
    page_number: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

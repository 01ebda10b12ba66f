"""Tables `tenants`, `api_keys`, `jobs`, `pages`, `job_events`, `webhook_deliveries` and the
dispatch tables, and the status enums with their transitions.

Every status word is a member of `JobStatus` or `PageStatus`; code never spells one out. SQL
text quotes them with `.sql` and `sql_status` (enum constants, never client input), and a CHECK
constraint on each status column holds the database to the same words (migration 0002).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
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


class SqlStatus(enum.StrEnum):
    """A status word that SQL text can quote: `{PageStatus.PENDING.sql}` is `'pending'`."""

    @property
    def sql(self) -> str:
        return f"'{self.value}'"


class JobStatus(SqlStatus):
    """pending → queued → completed | failed; cancelled from any unfinished state (README,
    "Statuses")."""

    PENDING = "pending"
    QUEUED = "queued"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_JOB_STATUSES


class PageStatus(SqlStatus):
    """pending → publishing → queued → done | failed; publishing → pending on stop or expiry;
    pending → cancelled when its job is cancelled."""

    PENDING = "pending"
    PUBLISHING = "publishing"
    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DetectStatus(SqlStatus):
    """A detect-first job (`/v1/ocr/jobs`, docs/detect.md): PENDING_UPLOAD → UPLOADED →
    DETECTING → DETECT_DONE → OCR_RUNNING → DONE, and FAILED. The words are that contract's
    own, upper case as its clients read them."""

    PENDING_UPLOAD = "PENDING_UPLOAD"
    UPLOADED = "UPLOADED"
    DETECTING = "DETECTING"
    DETECT_DONE = "DETECT_DONE"
    OCR_RUNNING = "OCR_RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class PageTask(enum.StrEnum):
    """What a job's pages ask of the workers, besides full OCR (a job's `page_task` NULL)."""

    DETECT = "detect"
    RECOGNIZE = "recognize"


FINISHED_JOB_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def sql_status(*statuses: SqlStatus) -> str:
    """Statuses as SQL string literals, comma-separated: `'pending', 'queued'`."""
    return ", ".join(status.sql for status in statuses)


def status_check(enum_type: type[SqlStatus], name: str) -> CheckConstraint:
    """`status IN (...every member...)`: the database refuses a word the code does not know."""
    return CheckConstraint(f"status IN ({sql_status(*enum_type)})", name=name)


JOBS_STATUS_CHECK = "ck_jobs_status"
PAGES_STATUS_CHECK = "ck_pages_status"


class DeliveryStatus(SqlStatus):
    """A webhook delivery: pending (due at `next_attempt_at`) → delivered | failed (gave up)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class CallbackEvents(enum.StrEnum):
    """Which events a job's callback receives: its end only, or each page's as well."""

    JOB = "job"
    PAGE = "page"


class TextLayer(enum.StrEnum):
    """`text_layer` of a PDF upload: `auto` reads a page from its own text layer when that
    passes the quality check (rendering/text_layer.py); `off` sends every page to OCR."""

    AUTO = "auto"
    OFF = "off"


class PageSource(enum.StrEnum):
    """Where a done page's text came from: an OCR worker, or the PDF's own text layer."""

    OCR = "ocr"
    TEXT_LAYER = "text_layer"


DEFAULT_TENANT = "default"
# A tenant's name: it appears in headers, URLs and logs, so it is short and plain.
TENANT_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
DELIVERIES_STATUS_CHECK = "ck_webhook_deliveries_status"
CALLBACK_EVENTS_CHECK = "callback_events IN (" + ", ".join(f"'{e}'" for e in CallbackEvents) + ")"
TEXT_LAYER_CHECK = "text_layer IN (" + ", ".join(f"'{t}'" for t in TextLayer) + ")"
PAGE_TASK_CHECK = "page_task IN (" + ", ".join(f"'{t}'" for t in PageTask) + ")"
DETECT_JOBS_STATUS_CHECK = "ck_detect_jobs_status"
PAGE_SOURCE_CHECK = "source IN (" + ", ".join(f"'{t}'" for t in PageSource) + ")"
# The jobs an identical upload may be given back: a failed or cancelled job is not reused.
_NOT_REUSED = sql_status(JobStatus.FAILED, JobStatus.CANCELLED)
DEDUP_LIVE_WHERE = f"dedup_key IS NOT NULL AND status NOT IN ({_NOT_REUSED})"


class Base(DeclarativeBase):
    pass


class Timestamped:
    """`created_at` and `updated_at`, both set by the database; updates set `updated_at`."""

    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Tenant(Timestamped, Base):
    """A client organisation: its jobs, keys, limits, dispatch weight and webhook secret.

    A limit left NULL takes the default from settings (`OCR_GATEWAY_TENANT_*`).
    """

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    max_pending_pages: Mapped[int | None] = mapped_column(Integer)
    uploads_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_stored_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Shown once, when the tenant is created or the secret rotated; HMAC needs it in the clear.
    webhook_secret: Mapped[str] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_events: Mapped[str] = mapped_column(
        String(8), default=CallbackEvents.JOB, server_default=CallbackEvents.JOB.value
    )

    __table_args__ = (
        CheckConstraint(f"name ~ '{TENANT_NAME_PATTERN}'", name="ck_tenants_name"),
        CheckConstraint("weight > 0", name="ck_tenants_weight"),
        CheckConstraint(CALLBACK_EVENTS_CHECK, name="ck_tenants_callback_events"),
    )


class ApiKey(Base):
    """A client's key. Only the SHA-256 of its secret part is kept (the key is random, so a
    slow hash would add nothing but latency to every request)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(
        String(64), ForeignKey("tenants.name", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(Text)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Job(Timestamped, Base):
    __tablename__ = "jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant: Mapped[str] = mapped_column(
        String(64),
        ForeignKey("tenants.name"),
        default=DEFAULT_TENANT,
        server_default=DEFAULT_TENANT,
    )
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
    # Bytes of this job under files/ (its page PNGs), for the tenant's storage quota.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # 0-9, higher first (the upload's `priority` field, `PUT /admin/jobs/{id}/priority`); a
    # task (`/image`, `/image-sync`) is TASK_PRIORITY, above them all. Its images' frame
    # counts, in the order sent, map a task's pages back to its images.
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    task_frames: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    # Whether a task's `image_data` was a list (its result is a list of texts) or one string.
    task_list: Mapped[bool | None] = mapped_column(Boolean)
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_events: Mapped[str] = mapped_column(
        String(8), default=CallbackEvents.JOB, server_default=CallbackEvents.JOB.value
    )
    # A `/convert/batch` job: its pages are searched for tables, and it is made of the files
    # listed in `source_files` (`[{"index", "filename", "total_page_number"}]`, in order).
    extract_tables: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql("false")
    )
    source_files: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # SHA-256 of what the upload asked for (uploads/dedup.py): an identical upload of the
    # tenant gets this job back while it is not failed or cancelled. NULL: `dedup=false`.
    dedup_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    text_layer: Mapped[str] = mapped_column(
        String(8), default=TextLayer.OFF, server_default=TextLayer.OFF.value
    )
    # A detect-first job's pages are published as `detect`, then as `recognize` (with each
    # page's `request_boxes`); NULL: full OCR.
    page_task: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant", sql("created_at DESC"), sql("job_id DESC")),
        # A tenant's unfinished jobs: its quota of pages pending or in flight sums them.
        Index(
            "ix_jobs_tenant_open",
            "tenant",
            postgresql_where=sql(f"status IN ({sql_status(JobStatus.PENDING, JobStatus.QUEUED)})"),
        ),
        Index(
            "ix_jobs_open_created",
            sql("created_at DESC"),
            sql("job_id DESC"),
            postgresql_where=sql(f"status <> {JobStatus.COMPLETED.sql}"),
        ),
        Index("ix_jobs_created", sql("created_at DESC"), sql("job_id DESC")),
        status_check(JobStatus, JOBS_STATUS_CHECK),
        CheckConstraint(CALLBACK_EVENTS_CHECK, name="ck_jobs_callback_events"),
        # One live job per tenant and dedup key: two identical uploads at once insert one row.
        Index(
            "uq_jobs_tenant_dedup",
            "tenant",
            "dedup_key",
            unique=True,
            postgresql_where=sql(DEDUP_LIVE_WHERE),
        ),
        CheckConstraint(TEXT_LAYER_CHECK, name="ck_jobs_text_layer"),
        CheckConstraint(PAGE_TASK_CHECK, name="ck_jobs_page_task"),
    )


PAGE_PATH_COMMENT = "the page PNG's storage key: <job_id>/<page_number>.png"


class Page(Timestamped, Base):
    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.job_id", ondelete="CASCADE")
    )
    # The job's tenant, copied here so that a fair claim reads each tenant's oldest pending
    # pages straight from an index (`ix_pages_tenant_pending`).
    tenant: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    # The job's priority, copied here like the tenant, so claims find a task's pages at once.
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    page_number: Mapped[int] = mapped_column(Integer)
    # The PNG's key in the artefact store, never a path (migration 0014).
    path: Mapped[str] = mapped_column(Text, comment=PAGE_PATH_COMMENT)
    status: Mapped[str] = mapped_column(String(16), default=PageStatus.PENDING)
    text: Mapped[str | None] = mapped_column(Text)
    boxes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    # Tables found on the page: `[{"bbox", "rows": [[{"text", "row_span", "col_span"}]]}]`.
    tables: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(
        String(16), default=PageSource.OCR, server_default=PageSource.OCR.value
    )
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The boxes a `recognize` message of this page carries (`[{"id", "points", "score"?}]`),
    # copied from the job's detect result when its recognition was asked for.
    request_boxes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)

    __table_args__ = (
        UniqueConstraint("job_id", "page_number", name="uq_pages_job_page"),
        Index(
            "ix_pages_pending",
            "id",
            postgresql_where=sql(f"status = {PageStatus.PENDING.sql}"),
        ),
        Index(
            "ix_pages_priority_pending",
            "priority",
            "id",
            postgresql_where=sql(f"status = {PageStatus.PENDING.sql} AND priority > 0"),
        ),
        Index(
            "ix_pages_tenant_pending",
            "tenant",
            "id",
            postgresql_where=sql(f"status = {PageStatus.PENDING.sql}"),
        ),
        Index(
            "ix_pages_publishing_lease",
            "lease_until",
            postgresql_where=sql(f"status = {PageStatus.PUBLISHING.sql}"),
        ),
        Index(
            "ix_pages_queued",
            "id",
            postgresql_where=sql(f"status = {PageStatus.QUEUED.sql}"),
        ),
        status_check(PageStatus, PAGES_STATUS_CHECK),
        CheckConstraint(PAGE_SOURCE_CHECK, name="ck_pages_source"),
    )


class JobEvent(Base):
    """What happened to a job, appended in the same transaction as the change it describes."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    type: Mapped[str] = mapped_column(String(32))
    page_number: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (Index("ix_job_events_job_id", "job_id", "id"),)


class WebhookDelivery(Timestamped, Base):
    """The outbox: one webhook to send, written in the same transaction as the event it tells
    of. Its body and `webhook_id` are fixed at that moment, so every retry is the same message."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=sql(f"status = {DeliveryStatus.PENDING.sql}"),
        ),
        Index("ix_webhook_deliveries_status", "status", "id"),
        status_check(DeliveryStatus, DELIVERIES_STATUS_CHECK),
    )


class DownloadKind(enum.StrEnum):
    """What a download is: a workbook of a `/convert/batch` job's tables."""

    XLSX = "xlsx"


class Download(Base):
    """A file made from a job for the client to take home, served by
    `GET /api/v1/download/{file_id}`; it goes with its job."""

    __tablename__ = "downloads"

    file_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.job_id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("job_id", "kind", name="uq_downloads_job_kind"),
        CheckConstraint(
            "kind IN (" + ", ".join(f"'{k}'" for k in DownloadKind) + ")", name="ck_downloads_kind"
        ),
    )


class ImageStatus(SqlStatus):
    """An `/images` upload: PROCESSING → DONE once its thumbnails are written, or FAILED with a
    reason. The words are the thumbnail service's own, upper case as its clients read them."""

    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"


IMAGES_STATUS_CHECK = "ck_images_status"


class StoredImage(Timestamped, Base):
    """An image of `/images`: its original and its thumbnails under `files/images/<image_id>/`.

    `thumbnails` is `{"100x100": {"width", "height", "bytes", "etag"}, ...}` once DONE. A row
    PROCESSING is worked on by the process holding `lease_until`; another takes it up when the
    lease runs out (a crash), `attempts` counting the tries.
    """

    __tablename__ = "images"

    image_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.name"))
    filename: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # SHA-256 of the original's bytes: its ETag, and part of the dedup key.
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.PROCESSING)
    error: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    thumbnails: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # uploads/dedup.py's key: the tenant's identical upload gets this image back unless it
    # FAILED (or was deleted). NULL: sent with `dedup=false`.
    dedup_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))

    __table_args__ = (
        Index(
            "ix_images_processing_lease",
            "lease_until",
            postgresql_where=sql(f"status = {ImageStatus.PROCESSING.sql}"),
        ),
        # One live image per tenant and key: two identical uploads at once insert one row.
        Index(
            "uq_images_tenant_dedup",
            "tenant",
            "dedup_key",
            unique=True,
            postgresql_where=sql(f"dedup_key IS NOT NULL AND status <> {ImageStatus.FAILED.sql}"),
        ),
        status_check(ImageStatus, IMAGES_STATUS_CHECK),
    )


class DispatchState(Base):
    """One row: whether an operator's stop is in force (automatic dispatch waits for a start)."""

    __tablename__ = "dispatch_state"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    stopped: Mapped[bool] = mapped_column(Boolean, server_default=sql("false"))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The cap on publishing over every dispatcher together (NULL: none), and its token bucket:
    # each dispatcher draws pages from `rate_tokens`, refilled by the database clock's time
    # since `rate_refilled_at` (dispatch/repository.py, `draw_rate_tokens`).
    pages_per_second: Mapped[float | None] = mapped_column(Float)
    rate_tokens: Mapped[float] = mapped_column(Float, server_default="0")
    rate_refilled_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("id = 1", name="ck_dispatch_state_one_row"),
        CheckConstraint(
            "pages_per_second IS NULL OR pages_per_second > 0",
            name="ck_dispatch_state_rate_positive",
        ),
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


class DetectJob(Timestamped, Base):
    """A detect-first job of `/v1/ocr/jobs`: its contract status and its detect result.

    The row is made with the job id before any file exists (PENDING_UPLOAD); the upload makes
    the ordinary `jobs` row with the same id (`job_ref`, which takes this row with it when the
    job is deleted). `result_key` names the current detect result in the artefact store; a
    replacement writes a new object (`result_version` + 1), then moves the key here.
    """

    __tablename__ = "detect_jobs"

    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), ForeignKey("tenants.name"))
    job_ref: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.job_id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(16), default=DetectStatus.PENDING_UPLOAD)
    result_key: Mapped[str | None] = mapped_column(Text)
    result_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        status_check(DetectStatus, DETECT_JOBS_STATUS_CHECK),
        CheckConstraint("job_ref IS NULL OR job_ref = job_id", name="ck_detect_jobs_job_ref"),
    )


class WorkerThroughput(Base):
    """Pages each OCR worker answered, per minute: the monitoring page's per-worker rates.
    Counted by the results consumers from the `worker` field of results (older workers send
    none: `unnamed`) and added up every few seconds (monitor/throughput.py)."""

    __tablename__ = "worker_throughput"

    minute: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    done_pages: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_pages: Mapped[int] = mapped_column(Integer, server_default="0")

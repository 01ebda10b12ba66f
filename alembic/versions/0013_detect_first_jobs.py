"""detect-first jobs: `detect_jobs`, a job's `page_task`, a page's `request_boxes`

`detect_jobs`: one row per job of `/v1/ocr/jobs` (docs/detect.md), made before its upload
(PENDING_UPLOAD); `job_ref` is its `jobs` row once uploaded (the same id), deleted with it.
`jobs.page_task`: `detect` or `recognize` for such a job's pages (NULL: full OCR).
`pages.request_boxes`: the boxes a `recognize` page message carries.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration keeps the words it was written with.
DETECT_STATUSES = (
    "PENDING_UPLOAD",
    "UPLOADED",
    "DETECTING",
    "DETECT_DONE",
    "OCR_RUNNING",
    "DONE",
    "FAILED",
)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("page_task", sa.String(length=16), nullable=True))
    op.create_check_constraint("ck_jobs_page_task", "jobs", "page_task IN ('detect', 'recognize')")
    op.add_column(
        "pages", sa.Column("request_boxes", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    statuses = ", ".join(f"'{status}'" for status in DETECT_STATUSES)
    op.create_table(
        "detect_jobs",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("job_ref", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_key", sa.Text(), nullable=True),
        sa.Column("result_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"]),
        sa.ForeignKeyConstraint(["job_ref"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
        sa.UniqueConstraint("job_ref"),
        sa.CheckConstraint(f"status IN ({statuses})", name="ck_detect_jobs_status"),
        sa.CheckConstraint("job_ref IS NULL OR job_ref = job_id", name="ck_detect_jobs_job_ref"),
    )


def downgrade() -> None:
    op.drop_table("detect_jobs")
    op.drop_column("pages", "request_boxes")
    op.drop_constraint("ck_jobs_page_task", "jobs", type_="check")
    op.drop_column("jobs", "page_task")

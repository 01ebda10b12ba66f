"""job events, cancelled statuses, the dispatch state

- `job_events`: the append-only record of what happened to each job, written in the same
  transaction as the change it describes; readers catch up from it by id.
- `cancelled` joins the job and page statuses.
- `dispatch_state`: one row, whether an operator's stop is in force (for automatic dispatch).
- `ix_jobs_created`: the client API lists every job, newest first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_STATUSES = ("pending", "queued", "completed", "failed", "cancelled")
PAGE_STATUSES = ("pending", "publishing", "queued", "done", "failed", "cancelled")
OLD_JOB_STATUSES = ("pending", "queued", "completed", "failed")
OLD_PAGE_STATUSES = ("pending", "publishing", "queued", "done", "failed")


def _in_list(words: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{word}'" for word in words) + ")"


def _status_checks(jobs: Sequence[str], pages: Sequence[str]) -> None:
    op.drop_constraint("ck_jobs_status", "jobs", type_="check")
    op.drop_constraint("ck_pages_status", "pages", type_="check")
    op.create_check_constraint("ck_jobs_status", "jobs", _in_list(jobs))
    op.create_check_constraint("ck_pages_status", "pages", _in_list(pages))


def upgrade() -> None:
    _status_checks(JOB_STATUSES, PAGE_STATUSES)
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("page_number", sa.Integer(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id", "id"], unique=False)
    op.create_table(
        "dispatch_state",
        sa.Column("id", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("stopped", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name="ck_dispatch_state_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO dispatch_state (id, stopped) VALUES (1, false)")
    op.create_index(
        "ix_jobs_created",
        "jobs",
        [sa.text("created_at DESC"), sa.text("job_id DESC")],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_created", table_name="jobs")
    op.drop_table("dispatch_state")
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
    op.execute("DELETE FROM pages WHERE status = 'cancelled'")
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'")
    _status_checks(OLD_JOB_STATUSES, OLD_PAGE_STATUSES)

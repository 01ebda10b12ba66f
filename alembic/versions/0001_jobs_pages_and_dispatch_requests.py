"""jobs, pages and dispatch requests

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total_page_number", sa.Integer(), nullable=False),
        sa.Column(
            "excluded_pages", sa.ARRAY(sa.Integer()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("rendered_pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("render_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("render_lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index(
        "ix_jobs_open_created",
        "jobs",
        [sa.literal_column("created_at DESC"), sa.literal_column("job_id DESC")],
        unique=False,
        postgresql_where=sa.text("status <> 'completed'"),
    )
    op.create_table(
        "dispatch_requests",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("page_number", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "pages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("page_number", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("boxes", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("publish_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "page_number", name="uq_pages_job_page"),
    )
    op.create_index(
        "ix_pages_pending",
        "pages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_pages_publishing_lease",
        "pages",
        ["lease_until"],
        unique=False,
        postgresql_where=sa.text("status = 'publishing'"),
    )
    op.create_index(
        "ix_pages_queued",
        "pages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_pages_queued", table_name="pages", postgresql_where=sa.text("status = 'queued'")
    )
    op.drop_index(
        "ix_pages_publishing_lease",
        table_name="pages",
        postgresql_where=sa.text("status = 'publishing'"),
    )
    op.drop_index(
        "ix_pages_pending", table_name="pages", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("pages")
    op.drop_table("dispatch_requests")
    op.drop_index(
        "ix_jobs_open_created", table_name="jobs", postgresql_where=sa.text("status <> 'completed'")
    )
    op.drop_table("jobs")

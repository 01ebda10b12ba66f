"""thumbnails: the images of /images and their status

- `images`: one row an image uploaded to `/images` (its original and thumbnails live under
  `files/images/<image_id>/`), PROCESSING → DONE | FAILED, with the lease that lets another
  process take up an image whose process died, and the dedup key of an identical upload.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("image_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("tenant", sa.String(64), sa.ForeignKey("tenants.name"), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("media_type", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("thumbnails", postgresql.JSONB(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dedup_key", sa.LargeBinary(32), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("status IN ('PROCESSING', 'DONE', 'FAILED')", name="ck_images_status"),
    )
    op.create_index(
        "ix_images_processing_lease",
        "images",
        ["lease_until"],
        postgresql_where=sa.text("status = 'PROCESSING'"),
    )
    op.create_index(
        "uq_images_tenant_dedup",
        "images",
        ["tenant", "dedup_key"],
        unique=True,
        postgresql_where=sa.text("dedup_key IS NOT NULL AND status <> 'FAILED'"),
    )


def downgrade() -> None:
    op.drop_index("uq_images_tenant_dedup", table_name="images")
    op.drop_index("ix_images_processing_lease", table_name="images")
    op.drop_table("images")

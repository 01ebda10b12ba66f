"""uploads: the dedup key of an identical upload, the text-layer option and each page's source

- `jobs.dedup_key`: SHA-256 of the upload's kind, options and file hashes (uploads/dedup.py);
  NULL when the upload sent `dedup=false`. `uq_jobs_tenant_dedup` holds one live job (neither
  failed nor cancelled) per tenant and key, so two identical uploads at once insert one row.
- `jobs.text_layer`: `auto` reads each PDF page from its text layer when it passes the
  quality check; `off` (the default, and every job before this) sends every page to OCR.
- `pages.source`: `ocr` or `text_layer`, where a done page's text came from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("dedup_key", sa.LargeBinary(length=32), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("text_layer", sa.String(length=8), server_default="off", nullable=False),
    )
    op.create_check_constraint("ck_jobs_text_layer", "jobs", "text_layer IN ('auto', 'off')")
    op.create_index(
        "uq_jobs_tenant_dedup",
        "jobs",
        ["tenant", "dedup_key"],
        unique=True,
        postgresql_where=sa.text("dedup_key IS NOT NULL AND status NOT IN ('failed', 'cancelled')"),
    )
    op.add_column(
        "pages",
        sa.Column("source", sa.String(length=16), server_default="ocr", nullable=False),
    )
    op.create_check_constraint("ck_pages_source", "pages", "source IN ('ocr', 'text_layer')")


def downgrade() -> None:
    op.drop_constraint("ck_pages_source", "pages")
    op.drop_column("pages", "source")
    op.drop_index("uq_jobs_tenant_dedup", table_name="jobs")
    op.drop_constraint("ck_jobs_text_layer", "jobs")
    op.drop_column("jobs", "text_layer")
    op.drop_column("jobs", "dedup_key")

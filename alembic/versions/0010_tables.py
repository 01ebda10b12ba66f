"""tables: jobs of /convert/batch, their files, each page's tables and the workbooks made

- `jobs.extract_tables`: the job's pages are searched for tables (a `/convert/batch` job); its
  page messages ask the worker for them, and born-digital pages have them read from their text
  layer at render time.
- `jobs.source_files`: the files a `/convert/batch` job was made of, in the order sent:
  `[{"index", "filename", "total_page_number"}]`; NULL for other jobs.
- `pages.tables`: the tables found on the page, `[{"bbox", "rows": [[{"text", "row_span",
  "col_span"}]]}]`; NULL when none were searched for.
- `downloads`: a file made from a job for the client to take home (`kind` `xlsx`), served by
  `GET /api/v1/download/{file_id}`; deleted with its job.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs",
        sa.Column("extract_tables", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "jobs", sa.Column("source_files", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "pages", sa.Column("tables", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_table(
        "downloads",
        sa.Column("file_id", sa.UUID(), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("file_id"),
        sa.UniqueConstraint("job_id", "kind", name="uq_downloads_job_kind"),
        sa.CheckConstraint("kind IN ('xlsx')", name="ck_downloads_kind"),
    )


def downgrade() -> None:
    op.drop_table("downloads")
    op.drop_column("pages", "tables")
    op.drop_column("jobs", "source_files")
    op.drop_column("jobs", "extract_tables")

"""the tenant's unfinished jobs, for its quota of pages pending or in flight

- `ix_jobs_tenant_open`: a tenant's pending and queued jobs, read under the upload's lock to sum
  their pages still to do, so the check costs a row per unfinished job, never one per job.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_tenant_open",
        "jobs",
        ["tenant"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'queued')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_open", table_name="jobs")

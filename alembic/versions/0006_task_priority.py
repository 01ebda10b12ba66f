"""tasks: job and page priority, task frames

- `jobs.priority`, `pages.priority` (copied from the job): a task's pages (`/image`,
  `/image-sync`) are claimed before batch pages and published with a higher AMQP priority.
- `jobs.task_frames`: how many pages each image of a task became, in the order sent.
- `ix_pages_priority_pending`: the pending pages of tasks, for the claim that takes them first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("task_frames", postgresql.ARRAY(sa.Integer()), nullable=True))
    op.add_column(
        "pages", sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.create_index(
        "ix_pages_priority_pending",
        "pages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND priority > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_pages_priority_pending", table_name="pages")
    op.drop_column("pages", "priority")
    op.drop_column("jobs", "task_frames")
    op.drop_column("jobs", "priority")

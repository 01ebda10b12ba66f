"""tasks: whether a task's images came as a list

- `jobs.task_list`: a task sent `image_data` as a list (its result is a list of texts, in the
  order sent) or as one string (its result is one text); NULL for a job that is no task.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("task_list", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "task_list")

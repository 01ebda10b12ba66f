"""dispatch: job priorities 0-9 and the publishing rate limit shared by every dispatcher

- `ix_pages_priority_pending` on `(priority, id)`: the pending pages above priority 0 (a user
  priority 1-9, or a task's `TASK_PRIORITY` 10), so that a claim finds the highest waiting
  level and its oldest pages from the index.
- `dispatch_state.pages_per_second` (NULL: no cap), and the token bucket that every dispatcher
  draws from before it claims: `rate_tokens`, refilled by the time since `rate_refilled_at`
  (the database's clock, so dispatchers on other machines share it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_pages_priority_pending", table_name="pages")
    op.create_index(
        "ix_pages_priority_pending",
        "pages",
        ["priority", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND priority > 0"),
    )
    op.add_column("dispatch_state", sa.Column("pages_per_second", sa.Float(), nullable=True))
    op.add_column(
        "dispatch_state",
        sa.Column("rate_tokens", sa.Float(), server_default="0", nullable=False),
    )
    op.add_column(
        "dispatch_state",
        sa.Column(
            "rate_refilled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        "ck_dispatch_state_rate_positive",
        "dispatch_state",
        "pages_per_second IS NULL OR pages_per_second > 0",
    )


def downgrade() -> None:
    op.drop_constraint("ck_dispatch_state_rate_positive", "dispatch_state", type_="check")
    op.drop_column("dispatch_state", "rate_refilled_at")
    op.drop_column("dispatch_state", "rate_tokens")
    op.drop_column("dispatch_state", "pages_per_second")
    op.drop_index("ix_pages_priority_pending", table_name="pages")
    op.create_index(
        "ix_pages_priority_pending",
        "pages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending' AND priority > 0"),
    )

"""monitoring: pages recognised per minute and per worker, for the operator's page

`worker_throughput`: one row per minute and worker (`hostname:pid` from the result's `worker`
field; `unnamed` for older workers), the pages it answered done and failed. The results
consumers add their counts every few seconds (monitor/throughput.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_throughput",
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("done_pages", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_pages", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("minute", "worker"),
    )


def downgrade() -> None:
    op.drop_table("worker_throughput")

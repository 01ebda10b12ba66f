"""CHECK constraints on the status columns

The database refuses a status word that the code's enums (`JobStatus`, `PageStatus`) do not
define, so a typo in a query fails loudly instead of stranding a row in a state no query reads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The words as they are at this revision: a later revision that adds a status replaces the
# constraint with its own list, so this one must not follow the enums as they change.
JOB_STATUSES = ("pending", "queued", "completed", "failed")
PAGE_STATUSES = ("pending", "publishing", "queued", "done", "failed")


def _in_list(words: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{word}'" for word in words) + ")"


def upgrade() -> None:
    op.create_check_constraint("ck_jobs_status", "jobs", _in_list(JOB_STATUSES))
    op.create_check_constraint("ck_pages_status", "pages", _in_list(PAGE_STATUSES))


def downgrade() -> None:
    op.drop_constraint("ck_pages_status", "pages", type_="check")
    op.drop_constraint("ck_jobs_status", "jobs", type_="check")

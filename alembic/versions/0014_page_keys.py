"""pages.path holds the page PNG's storage key, `<job_id>/<page_number>.png`

Rows written before this hold the absolute path of `files/<job_id>/<n>.png`; with artefacts
in a store (local disk or S3, `ocr_gateway.storage`), the key is what names a page's PNG on
either backend (on local disk it is that path relative to FILES_DIR, so no file moves).
The downgrade cannot know the old FILES_DIR: it leaves the keys.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE pages
           SET path = job_id::text || '/' || page_number::text || '.png'
         WHERE path IS DISTINCT FROM job_id::text || '/' || page_number::text || '.png'
        """
    )
    # Written out, not imported: the models' PAGE_PATH_COMMENT, as this revision wrote it.
    op.execute(
        "COMMENT ON COLUMN pages.path IS 'the page PNG''s storage key: <job_id>/<page_number>.png'"
    )


def downgrade() -> None:
    op.execute("COMMENT ON COLUMN pages.path IS NULL")

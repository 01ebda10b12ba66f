"""tenants, API keys, webhook deliveries

- `tenants`: each client organisation, with its dispatch weight, limit overrides, webhook
  signing secret and default callback. The `default` tenant is created here and owns every
  existing job.
- `api_keys`: client keys, by id, with only a SHA-256 of their secret part.
- `jobs.tenant`, `jobs.stored_bytes`, `jobs.callback_url`, `jobs.callback_events`.
- `pages.tenant`: the job's tenant, so a fair claim reads each tenant's pending pages from an
  index.
- `webhook_deliveries`: the outbox of webhooks, written with the events they tell of.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import base64
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALLBACK_EVENTS_CHECK = "callback_events IN ('job', 'page')"


def _timestamps() -> list[sa.Column[sa.DateTime]]:
    return [
        sa.Column(
            name,
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        )
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("max_pending_pages", sa.Integer(), nullable=True),
        sa.Column("uploads_per_minute", sa.Integer(), nullable=True),
        sa.Column("max_stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("callback_events", sa.String(length=8), server_default="job", nullable=False),
        *_timestamps(),
        sa.CheckConstraint("name ~ '^[A-Za-z0-9._-]{1,64}$'", name="ck_tenants_name"),
        sa.CheckConstraint("weight > 0", name="ck_tenants_weight"),
        sa.CheckConstraint(CALLBACK_EVENTS_CHECK, name="ck_tenants_callback_events"),
        sa.PrimaryKeyConstraint("name"),
    )
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    op.execute(
        sa.text(
            "INSERT INTO tenants (name, webhook_secret) VALUES ('default', :secret)"
        ).bindparams(secret=secret)
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"], unique=False)

    op.add_column(
        "jobs",
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
    )
    op.add_column(
        "jobs", sa.Column("stored_bytes", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("callback_events", sa.String(length=8), server_default="job", nullable=False),
    )
    op.create_foreign_key("jobs_tenant_fkey", "jobs", "tenants", ["tenant"], ["name"])
    op.create_check_constraint("ck_jobs_callback_events", "jobs", CALLBACK_EVENTS_CHECK)
    op.create_index(
        "ix_jobs_tenant_created",
        "jobs",
        ["tenant", sa.text("created_at DESC"), sa.text("job_id DESC")],
        unique=False,
    )
    op.add_column(
        "pages",
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
    )
    op.create_index(
        "ix_pages_tenant_pending",
        "pages",
        ["tenant", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook_id"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_status", "webhook_deliveries", ["status", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_pages_tenant_pending", table_name="pages")
    op.drop_column("pages", "tenant")
    op.drop_index("ix_jobs_tenant_created", table_name="jobs")
    op.drop_constraint("ck_jobs_callback_events", "jobs", type_="check")
    op.drop_constraint("jobs_tenant_fkey", "jobs", type_="foreignkey")
    for column in ("callback_events", "callback_url", "stored_bytes", "tenant"):
        op.drop_column("jobs", column)
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")

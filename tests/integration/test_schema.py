"""The migrated schema is the one the models describe, and it holds statuses to the enums."""

from __future__ import annotations

import re

import pytest
import sqlalchemy.exc
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ocr_gateway.components import Components
from ocr_gateway.db.models import (
    JOBS_STATUS_CHECK,
    PAGES_STATUS_CHECK,
    Base,
    JobStatus,
    PageStatus,
)


async def test_migrations_build_exactly_the_models_schema(services: Components) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, Base.metadata))

    async with services.sessions() as session:
        connection = await session.connection()
        diff = await connection.run_sync(differences)
    assert diff == [], f"the migrations and the models disagree: {diff}"


@pytest.mark.parametrize(
    ("constraint", "statuses"),
    [(JOBS_STATUS_CHECK, JobStatus), (PAGES_STATUS_CHECK, PageStatus)],
)
async def test_status_constraints_list_exactly_the_enum_words(
    services: Components, constraint: str, statuses: type[JobStatus] | type[PageStatus]
) -> None:
    async with services.sessions() as session:
        definition = await session.scalar(
            text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
            {"name": constraint},
        )
    assert definition is not None, f"{constraint} is missing"
    words = set(re.findall(r"'(\w+)'", str(definition)))
    assert words == {status.value for status in statuses}


async def test_an_unknown_status_word_is_refused(services: Components) -> None:
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="ck_jobs_status"):
        async with services.sessions.begin() as session:
            await session.execute(
                text(
                    "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number)"
                    " VALUES (gen_random_uuid(), 'x.pdf', 'application/pdf', 'complete', 1)"
                )
            )

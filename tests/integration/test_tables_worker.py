"""Tables end to end, against the real PostgreSQL, RabbitMQ and OCR worker: a page of a job
that searches for tables is published with `"tables": true`, the worker (a real subprocess)
finds the table on the image and fills it from its OCR boxes, and the result's tables land in
`pages.tables`; a page of an ordinary job is published as before and gets none.
"""

from __future__ import annotations

import importlib.util
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.tables.model import Table
from tests.support.documents import sample
from tests.support.http import upload, wait_for_job, wait_rendered
from tests.support.tables import cell_accuracy, ruled_pages
from tests.support.worker import LogLineMissing, worker_process

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra (make install does)",
)


async def _search_tables(services: Components, job_id: str) -> None:
    """What a /convert/batch job is: `extract_tables` set on the job."""
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET extract_tables = true WHERE job_id = :id"),
            {"id": uuid.UUID(job_id)},
        )


async def _stored_tables(services: Components, job_id: str) -> list[Any] | None:
    async with services.sessions() as session:
        value = await session.scalar(
            text("SELECT tables FROM pages WHERE job_id = :id AND page_number = 1"),
            {"id": uuid.UUID(job_id)},
        )
    return None if value is None else list(value)


async def test_a_table_page_goes_through_the_worker_into_pages_tables(
    client: httpx.AsyncClient, services: Components
) -> None:
    page = ruled_pages()[1]
    with_tables = (await upload(client, "table.png", page.data, kind="image"))["job_id"]
    plain = (await upload(client, sample("smile.png"), kind="image"))["job_id"]
    await wait_rendered(client, with_tables)
    await wait_rendered(client, plain)
    await _search_tables(services, with_tables)

    try:
        async with worker_process(services.settings, start_timeout=120) as worker:
            for job_id in (with_tables, plain):
                assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
            for job_id in (with_tables, plain):
                job = await wait_for_job(
                    client, job_id, lambda job: job["status"] in ("completed", "failed"), 120, 0.2
                )
                assert job["status"] == "completed", job
            await worker.wait_for("tables=1")
    except LogLineMissing as missing:
        pytest.fail(str(missing))

    stored = await _stored_tables(services, with_tables)
    assert stored is not None and len(stored) == 1, stored
    table = Table.model_validate(stored[0])
    exact, total = cell_accuracy([table], page.cells)
    assert exact / total >= 0.95, table.grid()
    assert set(stored[0]) == {"bbox", "rows"}
    assert set(stored[0]["rows"][0][0]) == {"text", "row_span", "col_span"}
    # The page of the ordinary job did not ask: no tables, not even an empty list.
    assert await _stored_tables(services, plain) is None

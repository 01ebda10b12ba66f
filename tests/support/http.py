"""Calls to the gateway's HTTP API that many tests make."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.waiting import wait_until


async def upload(
    client: httpx.AsyncClient, path: Path | str, data: bytes | None = None, kind: str = "pdf"
) -> dict[str, Any]:
    """Upload a file (or bytes under its name) as a new job (`dedup=false`: tests upload one
    sample many times) and return the 202 body."""
    name = Path(path).name
    content = data if data is not None else Path(path).read_bytes()
    response = await client.post(
        f"/ocr{kind}", params={"dedup": "false"}, files={"file": (name, content)}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def job_detail(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/admin/job/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_job(
    client: httpx.AsyncClient,
    job_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
    interval: float = 0.1,
) -> dict[str, Any]:
    """Poll GET /admin/job/{job_id} until `done(job)`; return the last job seen."""
    latest: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal latest
        latest = await job_detail(client, job_id)
        return done(latest)

    await wait_until(reached, timeout, interval)
    return latest


async def wait_rendered(
    client: httpx.AsyncClient, job_id: str, timeout: float = 60
) -> dict[str, Any]:
    """Wait until every page of the job is rendered and recorded; return the job."""
    latest = await wait_for_job(
        client,
        job_id,
        lambda job: bool(job["rendered_pages"] == job["total_page_number"] or job["error"]),
        timeout,
    )
    assert latest["error"] is None, latest["error"]
    return latest

"""A render worker that dies: the pool is rebuilt, the pages are retried, later jobs render."""

from __future__ import annotations

import os
import signal

import httpx

from ocr_gateway.api.deps import Services
from tests.conftest import job_detail, sample, upload, wait_rendered, wait_until


async def test_killed_render_worker_is_replaced_and_the_job_still_finishes(
    client: httpx.AsyncClient, services: Services
) -> None:
    pool = services.ingest.render_pool
    rebuilds_before = pool.rebuilds
    accepted = await upload(client, sample("GeoTopo-komprimiert.pdf"))
    job_id = accepted["job_id"]

    async def rendering_started() -> bool:
        return (await job_detail(client, job_id))["rendered_pages"] >= 4

    await wait_until(rendering_started, interval=0.02)
    victims = pool.worker_pids()
    assert victims
    os.kill(victims[0], signal.SIGKILL)

    job = await wait_rendered(client, job_id, timeout=120)
    assert job["status"] == "pending"
    assert job["rendered_pages"] == 117
    assert pool.rebuilds == rebuilds_before + 1
    assert victims[0] not in pool.worker_pids()

    later = await upload(client, sample("pdflatex-4-pages.pdf"))
    assert (await wait_rendered(client, later["job_id"]))["rendered_pages"] == 4

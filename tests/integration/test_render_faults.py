"""A render worker that dies: the pool is rebuilt, the pages are retried, later jobs render."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import httpx

from ocr_gateway.components import Components
from tests.support.documents import sample
from tests.support.gateway import isolated_gateway
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.waiting import wait_until


async def test_killed_render_worker_is_replaced_and_the_job_still_finishes(
    client: httpx.AsyncClient, services: Components
) -> None:
    pool = services.renderer.render_pool
    rebuilds_before = pool.rebuilds
    accepted = await upload(client, sample("GeoTopo-komprimiert.pdf"))
    job_id = accepted["job_id"]

    async def rendering_started() -> bool:
        return bool((await job_detail(client, job_id))["rendered_pages"] >= 4)

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


async def test_worker_that_dies_on_every_try_fails_the_job_after_bounded_tries(
    tmp_path: Path,
) -> None:
    """A page that crashes its renderer each time (a MuPDF segfault looks the same to the pool
    as a SIGKILL): the job fails with the reason, and the next upload renders normally."""
    async with isolated_gateway(tmp_path, render_max_attempts=2) as gateway:
        pool = gateway.services.renderer.render_pool
        stop_killing = asyncio.Event()

        async def kill_every_worker() -> None:
            while not stop_killing.is_set():
                for pid in pool.worker_pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.01)

        killer = asyncio.create_task(kill_every_worker())
        try:
            accepted = await upload(gateway.client, sample("002-trivial-libre-office-writer.pdf"))

            async def failed() -> bool:
                return (await job_detail(gateway.client, accepted["job_id"]))["error"] is not None

            await wait_until(failed, timeout=90)
        finally:
            stop_killing.set()
            await killer
        job = await job_detail(gateway.client, accepted["job_id"])
        assert job["status"] == "failed"
        assert "page 1" in job["error"] and "died" in job["error"]
        assert pool.rebuilds >= 3, "first try plus two retries, each on a fresh pool"

        later = await upload(gateway.client, sample("pdflatex-4-pages.pdf"))
        assert (await wait_rendered(gateway.client, later["job_id"]))["rendered_pages"] == 4

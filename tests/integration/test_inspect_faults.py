"""An inspect worker that dies: the next upload is inspected on a rebuilt pool, never refused.

A crash in the pool is the service's fault, not the document's: a valid upload after it is
accepted (202), and when the pool cannot be made to work the answer is 503 with `Retry-After`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.core.process_pool import ProcessPool
from tests.support.documents import sample
from tests.support.http import upload, wait_rendered
from tests.support.waiting import wait_until


def _has_exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie: it can run nothing more (Linux /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return "\nState:\tZ" in status


async def _nothing_left_behind(services: Components) -> None:
    async with services.sessions() as session:
        jobs = (await session.execute(text("SELECT count(*) FROM jobs"))).scalar_one()
    assert jobs == 0
    assert list(services.settings.temp_dir.iterdir()) == []


async def test_killed_idle_inspect_worker_does_not_fail_the_next_upload(
    client: httpx.AsyncClient, services: Components
) -> None:
    """Issue 10's report: every pool process SIGKILLed while idle, then a valid PDF uploaded.
    The pool is found broken before use and rebuilt; the upload is accepted and renders."""
    pool = services.uploads.inspect_pool
    rebuilds_before = pool.rebuilds
    victims = pool.worker_pids()
    assert victims
    for pid in victims:
        os.kill(pid, signal.SIGKILL)

    async def all_dead() -> bool:
        return all(_has_exited(pid) for pid in victims)

    await wait_until(all_dead, timeout=10, interval=0.01)

    accepted = await upload(client, sample("pdflatex-4-pages.pdf"))
    assert accepted["total_page_number"] == 4
    # Each upload has an inspect process of its own: the one it was given was found dead and
    # rebuilt before use; the others are rebuilt when an upload is given them.
    assert pool.rebuilds == rebuilds_before + 1, "rebuilt once, before the upload's inspection"
    assert len(set(victims) - set(pool.worker_pids())) == 1
    assert (await wait_rendered(client, accepted["job_id"]))["rendered_pages"] == 4


async def test_inspect_worker_killed_just_before_an_upload_is_retried(
    client: httpx.AsyncClient, services: Components
) -> None:
    """The kill lands as the upload arrives, before or during its inspection: either way the
    inspection runs again on a rebuilt pool and the upload is accepted."""
    pool = services.uploads.inspect_pool
    for round_ in range(3):
        victims = pool.worker_pids() or [0]
        for pid in victims:
            if pid:
                with contextlib.suppress(ProcessLookupError):  # killed in an earlier round
                    os.kill(pid, signal.SIGKILL)
        accepted = await upload(client, sample("pdflatex-4-pages.pdf"))
        assert accepted["total_page_number"] == 4, f"round {round_}"
        assert (await wait_rendered(client, accepted["job_id"]))["rendered_pages"] == 4


async def test_inspect_pool_that_cannot_start_answers_503_with_retry_after(
    client: httpx.AsyncClient, services: Components
) -> None:
    """Every process of the inspect pool exits as it starts (its initializer is `os._exit`):
    the pool is rebuilt and probed a bounded number of times, then the answer is a 503 with
    `Retry-After`, never a 4xx; nothing is left behind, and the service recovers with a
    working pool."""

    async def earlier_uploads_removed() -> bool:  # a render removes its upload as it ends
        return not any(services.settings.temp_dir.iterdir())

    await wait_until(earlier_uploads_removed, timeout=30)
    uploads = services.uploads
    working = uploads.inspect_pool
    failing = ProcessPool("inspect", 1, initializer=os._exit, initargs=(3,))
    uploads.inspect_pool = failing
    try:
        content = sample("pdflatex-4-pages.pdf").read_bytes()
        response = await client.post("/ocrpdf", files={"file": ("good.pdf", content)})
    finally:
        uploads.inspect_pool = working
        failing.shutdown()

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "service_unavailable"
    assert "inspect" in body["detail"]
    assert 2 <= failing.rebuilds <= 4, "rebuilt a bounded number of times"
    await _nothing_left_behind(services)

    accepted = await upload(client, sample("pdflatex-4-pages.pdf"))
    assert (await wait_rendered(client, accepted["job_id"]))["rendered_pages"] == 4

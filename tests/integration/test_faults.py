"""Faults survived: the broker or the database cut mid-work, a renderer that runs forever,
a full disk, two app processes. Each checks that nothing is lost, in PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI

from ocr_gateway.app import create_app
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import sample
from tests.support.gateway import Gateway, drain, isolated_gateway, page_counts, seed_pages
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy("127.0.0.1", port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def _wait_count(gateway: Gateway, status: str, at_least: int, timeout: float = 60) -> None:
    async def reached() -> bool:
        return (await page_counts(gateway.services)).get(status, 0) >= at_least

    reached.__name__ = f"{status}>={at_least}"
    await wait_until(reached, timeout, interval=0.02)


async def _wait_depth(channel: AbstractChannel, queue: str, at_least: int) -> None:
    """Wait until the broker holds `at_least` messages. A test that must act while publishing
    is under way watches the broker, not the database: the database records confirms a flush
    interval late, and fast publishing can send everything within that time."""

    async def deep_enough() -> bool:
        return await queue_depth(channel, queue) >= at_least

    deep_enough.__name__ = f"{queue} depth>={at_least}"
    await wait_until(deep_enough, timeout=60, interval=0.01)


async def _all_messages(channel: AbstractChannel, queue: str) -> list[tuple[str, int]]:
    bodies = await drain(channel, queue)
    return [(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)]


async def test_broker_cut_mid_publish_loses_no_page(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with (
        proxy_to(5672) as proxy,
        isolated_gateway(
            tmp_path, amqp_port=proxy.port, publisher_concurrency=16, publish_timeout_s=2.0
        ) as gateway,
    ):
        jobs = await seed_pages(gateway, jobs=5, pages=200)
        total = 1000
        assert (await gateway.client.post("/admin/start")).status_code == 202
        await _wait_depth(channel, gateway.settings.pages_queue, 100)
        proxy.cut()

        async def nothing_in_flight() -> bool:
            counts = await page_counts(gateway.services)
            return counts.get("publishing", 0) == 0

        await wait_until(nothing_in_flight, timeout=30)
        counts = await page_counts(gateway.services)
        assert counts.get("queued", 0) + counts.get("pending", 0) == total, counts
        assert counts.get("pending", 0) > 0, "the cut came after everything was sent"
        proxy.restore()

        # The start is still in force: publishing resumes by itself once the broker is back.
        await _wait_count(gateway, "queued", total, timeout=90)
        received = await _all_messages(channel, gateway.settings.pages_queue)
        expected = {(str(job), n) for job in jobs for n in range(1, 201)}
        assert set(received) == expected, "every page delivered at least once"
        assert len(received) >= total


async def test_database_cut_mid_publish_and_mid_results_recovers_by_itself(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with (
        proxy_to(5432) as proxy,
        # A claim whose commit reply is lost in the cut is in the database but not held by the
        # dispatcher; its lease returns it, so the lease is kept short enough for this test.
        isolated_gateway(
            tmp_path, db_port=proxy.port, publisher_concurrency=16, dispatch_lease_s=10.0
        ) as gateway,
    ):
        jobs = await seed_pages(gateway, jobs=5, pages=200)
        total = 1000
        assert (await gateway.client.post("/admin/start")).status_code == 202
        await _wait_count(gateway, "queued", 100)
        proxy.cut()
        await asyncio.sleep(2.0)
        proxy.restore()
        await _wait_count(gateway, "queued", total, timeout=90)
        received = await _all_messages(channel, gateway.settings.pages_queue)
        assert set(received) == {(str(job), n) for job in jobs for n in range(1, 201)}
        assert len(received) == total, "no page marked queued without its confirm, none resent"

        # Results while the database is unreachable are not acked, so none is lost.
        proxy.cut()
        for job in jobs:
            for number in range(1, 201):
                body = {"job_id": str(job), "page_number": number, "status": "done", "text": "t"}
                await channel.default_exchange.publish(
                    aio_pika.Message(orjson.dumps(body)),
                    routing_key=gateway.settings.results_queue,
                )
        await asyncio.sleep(3.0)
        proxy.restore()

        async def all_completed() -> bool:
            details = [await job_detail(gateway.client, str(job)) for job in jobs]
            return all(d["status"] == "completed" and d["completed_pages"] == 200 for d in details)

        await wait_until(all_completed, timeout=90)
        assert await queue_depth(channel, gateway.settings.results_queue) == 0
        assert await queue_depth(channel, f"{gateway.settings.results_queue}.dead") == 0


def _endless_pdf() -> bytes:
    """A valid one-page PDF whose page takes minutes to rasterise (20,000 filled curves)."""
    import random

    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    shape = page.new_shape()
    rng = random.Random(1)
    for _ in range(20000):
        points = [(rng.random() * 595, rng.random() * 842) for _ in range(4)]
        shape.draw_bezier(*points)
    shape.finish(width=3, color=(0, 0, 0), fill=(0.5, 0.2, 0.1))
    shape.commit()
    data: bytes = doc.tobytes(deflate=True)
    return data


async def test_render_that_runs_forever_fails_the_job_and_the_pool_recovers(
    tmp_path: Path,
) -> None:
    heavy = await asyncio.to_thread(_endless_pdf)
    async with isolated_gateway(
        tmp_path, render_page_timeout_s=1.5, render_max_attempts=2
    ) as gateway:
        pool = gateway.services.renderer.render_pool
        accepted = await upload(gateway.client, "endless.pdf", heavy)

        async def failed() -> bool:
            return (await job_detail(gateway.client, accepted["job_id"]))["error"] is not None

        await wait_until(failed, timeout=60)
        job = await job_detail(gateway.client, accepted["job_id"])
        assert job["status"] == "failed"
        assert "page 1" in job["error"] and "ran over" in job["error"]
        assert pool.rebuilds >= 2, "the stuck worker was killed and replaced"

        async def upload_removed() -> bool:  # right after the failure is recorded
            return not any(gateway.settings.temp_dir.glob("*.upload"))

        await wait_until(upload_removed, timeout=10)
        start = await gateway.client.post(f"/admin/start/{accepted['job_id']}")
        assert start.status_code == 409, "a failed job is not published"

        later = await upload(gateway.client, sample("pdflatex-4-pages.pdf"))
        assert (await wait_rendered(gateway.client, later["job_id"]))["rendered_pages"] == 4


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_disk_full_while_writing_pngs_fails_the_job_cleanly(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small-files", "1m") as files_dir:
        async with isolated_gateway(tmp_path, files_dir=files_dir) as gateway:
            accepted = await upload(gateway.client, sample("GeoTopo-komprimiert.pdf"))

            async def failed() -> bool:
                detail = await job_detail(gateway.client, accepted["job_id"])
                return detail["error"] is not None

            await wait_until(failed, timeout=60)
            job = await job_detail(gateway.client, accepted["job_id"])
            assert job["status"] == "failed"
            assert "no space left" in job["error"]
            assert list(files_dir.rglob("*.part")) == [], "no partial file left"
            for page in job["pages"]:
                assert (files_dir / page["path"]).stat().st_size > 0
            health = await gateway.client.get("/health")
            assert health.json()["status"] == "ok", "the service stays up"
            deleted = await gateway.client.delete(f"/admin/delete/job/{accepted['job_id']}")
            assert deleted.status_code == 200
            small = await upload(gateway.client, sample("002-trivial-libre-office-writer.pdf"))
            assert (await wait_rendered(gateway.client, small["job_id"]))["rendered_pages"] == 1


async def test_stop_under_load_answers_fast_and_a_second_start_sends_exactly_the_rest(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(tmp_path) as gateway:
        jobs = await seed_pages(gateway, jobs=25, pages=200)
        total = 5000
        assert (await gateway.client.post("/admin/start")).status_code == 202
        await _wait_depth(channel, gateway.settings.pages_queue, 500)
        loop = asyncio.get_running_loop()
        began = loop.time()
        stop = await gateway.client.post("/admin/stop")
        answered_in = loop.time() - began
        assert stop.status_code == 202
        assert answered_in < 1.0, f"stop took {answered_in:.3f}s"

        async def settled() -> bool:
            return (await page_counts(gateway.services)).get("publishing", 0) == 0

        await wait_until(settled)
        counts = await page_counts(gateway.services)
        assert counts.get("queued", 0) + counts.get("pending", 0) == total, counts
        assert counts.get("pending", 0) > 0
        first = await _all_messages(channel, gateway.settings.pages_queue)
        assert len(first) == counts["queued"] == len(set(first))

        assert (await gateway.client.post("/admin/start")).status_code == 202
        await _wait_count(gateway, "queued", total, timeout=120)
        second = await _all_messages(channel, gateway.settings.pages_queue)
        assert len(second) == counts["pending"], "the second start sent exactly the rest"
        assert set(first).isdisjoint(second)
        assert set(first) | set(second) == {(str(job), n) for job in jobs for n in range(1, 201)}


async def test_late_results_for_deleted_pages_and_jobs_are_dropped(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(tmp_path) as gateway:
        keep, gone = await seed_pages(gateway, jobs=2, pages=3)
        client = gateway.client
        assert (await client.delete(f"/admin/delete/job/{keep}/page/3")).status_code == 200
        assert (await client.delete(f"/admin/delete/job/{gone}")).status_code == 200
        results = [
            {"job_id": str(keep), "page_number": 3, "status": "done", "text": "late"},
            {"job_id": str(gone), "page_number": 1, "status": "done", "text": "late"},
            {"job_id": str(keep), "page_number": 1, "status": "done", "text": "one"},
            {"job_id": str(keep), "page_number": 1, "status": "failed", "error": "late"},
            {"job_id": str(keep), "page_number": 2, "status": "done", "text": "two"},
            {"job_id": str(keep), "page_number": 2, "status": "done", "text": "again"},
        ]
        for body in results:
            await channel.default_exchange.publish(
                aio_pika.Message(orjson.dumps(body)), routing_key=gateway.settings.results_queue
            )

        async def completed() -> bool:
            return bool((await job_detail(client, str(keep)))["status"] == "completed")

        async def all_results_taken() -> bool:
            return await queue_depth(channel, gateway.settings.results_queue) == 0

        await wait_until(completed)
        await wait_until(all_results_taken)
        await asyncio.sleep(0.5)  # room for a late result to change what it must not
        job = await job_detail(client, str(keep))
        assert job["completed_pages"] == 2 and job["failed_pages"] == 0
        assert [p["text"] for p in job["pages"]] == ["one", "two"]
        assert job["excluded_pages"] == [3]
        assert (await client.get(f"/admin/job/{gone}")).status_code == 404


async def test_two_app_processes_share_the_work_and_one_stop_halts_both(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(tmp_path, publisher_concurrency=8) as first:
        second_app: FastAPI = create_app(first.settings)
        async with second_app.router.lifespan_context(second_app):
            import httpx

            transport = httpx.ASGITransport(app=second_app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway/api/v1"
            ) as second:
                first_dispatcher = first.services.dispatcher
                second_dispatcher: Dispatcher | None = second_app.state.components.dispatcher
                assert first_dispatcher is not None and second_dispatcher is not None
                jobs = await seed_pages(first, jobs=20, pages=200)
                total = 4000
                assert (await first.client.post("/admin/start")).status_code == 202
                await _wait_count(first, "queued", 300)
                assert second_dispatcher.publishing, "both processes publish"
                assert (await second.post("/admin/stop")).status_code == 202

                async def both_halted() -> bool:
                    counts = await page_counts(first.services)
                    idle = not (first_dispatcher.publishing or second_dispatcher.publishing)
                    return idle and counts.get("publishing", 0) == 0

                await wait_until(both_halted)
                queued_at_stop = (await page_counts(first.services)).get("queued", 0)
                await asyncio.sleep(1.0)
                assert (await page_counts(first.services)).get("queued", 0) == queued_at_stop
                assert queued_at_stop < total

                assert (await second.post("/admin/start")).status_code == 202
                await _wait_count(first, "queued", total, timeout=120)
                received = await _all_messages(channel, first.settings.pages_queue)
                assert len(received) == total, "no page published twice by the two processes"
                assert set(received) == {(str(j), n) for j in jobs for n in range(1, 201)}
                assert second_dispatcher.published > 0
                assert first_dispatcher.published > 0

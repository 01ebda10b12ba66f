"""The gateway's processes killed mid-render and mid-publish (SIGKILL, all of them at once, as a
power cut would), then started again: renders resume from temp/, leased pages return to pending,
orphaned uploads are removed.

`tests.support.launched.Gateway` runs `ocr-gateway run`, the launcher behind `make run`.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import httpx
import orjson
from aio_pika.abc import AbstractChannel

from ocr_gateway.db.engine import build_engine, build_session_factory
from ocr_gateway.rendering.storage import Storage
from tests.support.documents import sample
from tests.support.gateway import drain, seed_pages
from tests.support.launched import (
    Gateway,
    count_status,
    service_env,
)
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until


async def test_killed_mid_render_resumes_from_temp_and_cleans_orphans(
    tmp_path: Path, spawned: list[Gateway]
) -> None:
    async with service_env(tmp_path, OCR_GATEWAY_ORPHAN_TEMP_AGE_S="60") as (settings, env):
        settings.temp_dir.mkdir(parents=True, exist_ok=True)
        orphan = settings.temp_dir / f"{uuid.uuid4()}.upload"
        orphan.write_bytes(b"left by a crash")
        hour_ago = time.time() - 3600
        os.utime(orphan, (hour_ago, hour_ago))
        fresh = settings.temp_dir / f"{uuid.uuid4()}.upload"
        fresh.write_bytes(b"an upload being spooled right now")

        service = Gateway(env, tmp_path / "gateway.log")
        spawned.append(service)
        await service.start()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            data = sample("GeoTopo-komprimiert.pdf").read_bytes()
            accepted = (await http.post("/ocrpdf", files={"file": ("geo.pdf", data)})).json()
            job_id = accepted["job_id"]

            async def partly_rendered() -> bool:
                job = (await http.get(f"/admin/job/{job_id}")).json()
                return bool(8 <= job["rendered_pages"] < 100)

            await wait_until(partly_rendered, interval=0.02)
            await service.kill()
            assert (settings.temp_dir / f"{job_id}.upload").exists(), "upload kept for resume"

            await service.start()

            async def finished() -> bool:
                job = (await http.get(f"/admin/job/{job_id}")).json()
                return bool(job["rendered_pages"] == 117)

            await wait_until(finished, timeout=90)
            job = (await http.get(f"/admin/job/{job_id}")).json()
            assert job["error"] is None
            assert [p["page_number"] for p in job["pages"]] == list(range(1, 118))
            pngs = sorted(int(p.stem) for p in (settings.files_dir / job_id).glob("*.png"))
            assert pngs == list(range(1, 118))
            assert not list((settings.files_dir / job_id).glob("*.part"))

            async def upload_removed() -> bool:
                return not (settings.temp_dir / f"{job_id}.upload").exists()

            await wait_until(upload_removed)
            assert not orphan.exists(), "orphaned upload removed"
            assert fresh.exists(), "a recent upload without a job is left alone"
        await service.kill()


async def test_killed_mid_publish_returns_leased_pages_and_finishes_after_restart(
    tmp_path: Path, channel: AbstractChannel, spawned: list[Gateway]
) -> None:
    proxy = FaultProxy("127.0.0.1", 5672)
    await proxy.start()
    try:
        async with service_env(
            tmp_path,
            OCR_GATEWAY_RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
            OCR_GATEWAY_PUBLISH_TIMEOUT_S="60",
            OCR_GATEWAY_PUBLISHER_CONCURRENCY="16",
        ) as (settings, env):
            engine = build_engine(settings, pool_size=2)
            sessions = build_session_factory(engine)
            storage = Storage(settings)
            jobs = await seed_pages((storage, sessions), jobs=10, pages=200)
            total = 2000

            service = Gateway(env, tmp_path / "gateway.log")
            spawned.append(service)
            await service.start()
            async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
                assert (await http.post("/admin/start")).status_code == 202

                async def some_queued() -> bool:
                    return await count_status(sessions, "queued") >= 100

                await wait_until(some_queued, interval=0.01)
                proxy.cut()  # confirms stop arriving: pages stay claimed, unconfirmed

                async def claimed() -> bool:
                    return await count_status(sessions, "publishing") > 0

                await wait_until(claimed)
                await service.kill()
                stranded = await count_status(sessions, "publishing")
                assert stranded > 0
                proxy.restore()

                await service.start()

                async def all_queued() -> bool:
                    return await count_status(sessions, "queued") == total

                await wait_until(all_queued, timeout=90)
            await service.kill()
            bodies = await drain(channel, settings.pages_queue)
            received = [(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)]
            assert set(received) == {(str(j), n) for j in jobs for n in range(1, 201)}
            assert len(received) >= total
            await engine.dispose()
    finally:
        await proxy.close()

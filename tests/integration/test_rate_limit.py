"""The publishing rate limit: `PUT /admin/dispatch/rate`, stored in PostgreSQL, read back by
`GET /admin/dispatch`, and held over every dispatcher together."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.db.engine import build_engine, build_session_factory
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.messaging.amqp import queue_depth
from ocr_gateway.rendering.storage import Storage
from tests.support.gateway import seed_pages
from tests.support.launched import logged_dispatcher_pids, service_env
from tests.support.waiting import wait_until


async def test_the_rate_is_set_read_back_and_lifted(
    client: httpx.AsyncClient, services: Components
) -> None:
    try:
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] is None
        answer = await client.put("/admin/dispatch/rate", json={"pages_per_second": 12.5})
        assert answer.status_code == 200, answer.text
        assert answer.json()["pages_per_second"] == 12.5
        state = (await client.get("/admin/dispatch")).json()
        assert state == {"stopped": state["stopped"], "pages_per_second": 12.5}
        assert isinstance(state["stopped"], bool)
        async with services.sessions() as session:
            assert (await repo.read_dispatch_state(session)).pages_per_second == 12.5

        for body in (
            {"pages_per_second": 0},
            {"pages_per_second": 5e-324},  # the bucket's arithmetic would underflow
            {"pages_per_second": -3},
            {"pages_per_second": "5"},
            {"pages_per_second": 2_000_000},
            {},
            {"rate": 5},
        ):
            refused = await client.put("/admin/dispatch/rate", json=body)
            assert refused.status_code == 422, (body, refused.text)
            assert refused.json()["error"]
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] == 12.5

        lifted = await client.put("/admin/dispatch/rate", json={"pages_per_second": None})
        assert lifted.status_code == 200
        assert (await client.get("/admin/dispatch")).json()["pages_per_second"] is None
    finally:
        await services.control.set_rate(None)


async def test_the_stop_shows_in_the_dispatch_state(client: httpx.AsyncClient) -> None:
    await client.post("/admin/stop")
    assert (await client.get("/admin/dispatch")).json()["stopped"] is True


# ---------------------------------------------------------------- two dispatcher processes

RATE = 100.0
FASTER = 400.0
WINDOW_S = 30.0
BACKLOG = 6000


class Depth:
    """The pages queue's ready messages over time (nothing consumes it here, so its growth
    is the rate at which the dispatchers publish, as the broker saw it)."""

    def __init__(self, channel: AbstractChannel, queue: str) -> None:
        self.channel = channel
        self.queue = queue

    async def now(self) -> tuple[float, int]:
        before = time.perf_counter()
        depth = await queue_depth(self.channel, self.queue)
        return (before + time.perf_counter()) / 2, depth

    async def rate_over(self, seconds: float) -> float:
        start, first = await self.now()
        await asyncio.sleep(seconds)
        end, last = await self.now()
        return (last - first) / (end - start)


@contextlib.asynccontextmanager
async def dispatchers(env: dict[str, str], logs: Path, count: int) -> AsyncIterator[list[int]]:
    """`ocr-gateway dispatch` processes, each in its own session; SIGTERM at the end."""
    processes = []
    try:
        for index in range(count):
            with (logs / f"dispatch-{index}.out").open("ab") as out:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "ocr_gateway",
                        "dispatch",
                        env=env,
                        stdout=out,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 20)
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_two_dispatchers_together_publish_at_the_rate_set(tmp_path: Path) -> None:
    """Two dispatcher processes, a 6,000-page backlog and no consumer: over 30 s the broker
    sees 100 pages/s (±10%); a new rate of 400 holds from 1 s after it is set; null lifts
    the cap (the rest goes out several times faster)."""
    async with service_env(tmp_path, OCR_GATEWAY_QUEUE_HIGH_WATER="100000") as (settings, env):
        engine = build_engine(settings, pool_size=2)
        sessions = build_session_factory(engine)
        try:
            await seed_pages((Storage(settings), sessions), jobs=6, pages=BACKLOG // 6)
            async with sessions.begin() as session:
                await repo.set_rate(session, RATE)
            async with dispatchers(env, tmp_path, 2) as pids:

                async def both_started() -> bool:
                    return sorted(logged_dispatcher_pids(settings)) == sorted(pids)

                await wait_until(both_started, timeout=60, what="two dispatchers started")
                connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
                async with connection:
                    depth = Depth(await connection.channel(), settings.pages_queue)
                    async with sessions.begin() as session:
                        await repo.add_dispatch_request(session)
                        await repo.notify_dispatchers(session, "start")

                    async def publishing() -> bool:
                        return (await depth.now())[1] > 0

                    await wait_until(publishing, timeout=20, what="first page published")
                    await asyncio.sleep(1.0)  # the first draw's burst is behind us
                    measured = await depth.rate_over(WINDOW_S)
                    print(f"rate set {RATE:.0f} pages/s, measured {measured:.1f} over 30 s")
                    assert abs(measured - RATE) <= 0.1 * RATE, measured

                    async with sessions.begin() as session:
                        await repo.set_rate(session, FASTER)
                        await repo.notify_dispatchers(session, "rate")
                    await asyncio.sleep(1.0)
                    faster = await depth.rate_over(3.0)
                    print(f"rate set {FASTER:.0f} pages/s, measured {faster:.1f} from 1 s on")
                    assert abs(faster - FASTER) <= 0.15 * FASTER, faster

                    async with sessions.begin() as session:
                        await repo.set_rate(session, None)
                        await repo.notify_dispatchers(session, "rate")
                    lifted_at = time.perf_counter()

                    async def all_published() -> bool:
                        return (await depth.now())[1] == BACKLOG

                    await wait_until(all_published, timeout=30, what="the backlog published")
                    lifted_s = time.perf_counter() - lifted_at
                    print(f"cap lifted: the rest of the backlog out in {lifted_s:.2f} s")
                    # Well over a thousand pages were left; at 400/s they would take > 2.5 s.
                    assert lifted_s < 2.5
            # Both dispatchers took part: each ran a publishing session, and neither failed.
            for index in range(2):
                output = (tmp_path / f"dispatch-{index}.out").read_text()
                assert "publishing started" in output, output[-2000:]
                assert "Traceback" not in output, output[-2000:]
            async with sessions() as session:
                queued = await session.scalar(
                    text("SELECT count(*) FROM pages WHERE status = 'queued'")
                )
            assert queued == BACKLOG
        finally:
            await engine.dispose()

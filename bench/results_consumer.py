"""Results stored per second by one API process's results consumer (docs/scaling.md).

    python -m bench.results_consumer            # one 3,000-page job, then 30 jobs of 100, twice

The whole app runs on a throw-away database and queues; rendered jobs are seeded with their
pages `queued`, then one result per page is published to the results queue at once (no
confirms) and the clock runs until every page is `done` in PostgreSQL. One big job shows the
job's row lock and recount; many small ones the plain per-result cost.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aio_pika
from sqlalchemy import text
from tests.support.gateway import isolated_gateway, seed_pages

from ocr_gateway.messaging.contracts import ResultMessage

SHAPES = [(1, 3000), (30, 100)]
ROUNDS = 2
# About a page of OCR text (480 characters).
TEXT = "lorem ipsum " * 40


async def results_per_second(tmp: Path, jobs: int, pages: int) -> float:
    async with isolated_gateway(tmp) as gateway:
        ids = await seed_pages(gateway, jobs, pages)
        async with gateway.services.sessions.begin() as session:
            await session.execute(text("UPDATE pages SET status = 'queued'"))
        bodies = [
            ResultMessage(job_id=job_id, page_number=number, status="done", text=TEXT)
            .model_dump_json()
            .encode()
            for number in range(1, pages + 1)
            for job_id in ids
        ]
        connection = await aio_pika.connect(gateway.settings.rabbitmq_url.get_secret_value())
        try:
            channel = await connection.channel()
            started = time.perf_counter()
            for body in bodies:
                await channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=gateway.settings.results_queue,
                )
            while True:
                async with gateway.services.sessions() as session:
                    done = (
                        await session.execute(
                            text("SELECT count(*) FROM pages WHERE status = 'done'")
                        )
                    ).scalar_one()
                if done >= len(bodies):
                    return len(bodies) / (time.perf_counter() - started)
                await asyncio.sleep(0.05)
        finally:
            await connection.close()


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-results-"))
    for round_number in range(ROUNDS):
        for jobs, pages in SHAPES:
            rate = await results_per_second(tmp / f"{round_number}-{jobs}x{pages}", jobs, pages)
            print(f"{jobs} job(s) x {pages} pages: {rate:.0f} results/s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

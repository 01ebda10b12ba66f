"""8. Events to clients: SSE fan-out latency and completeness, and job reads under load.

Subscribers follow `/jobs/{id}/events` over real HTTP while results arrive on the results queue
at a steady rate, as workers would send them. Latency is from the event's insert, in the
transaction that stores the result, to its arrival at the subscriber (both clocks are this
machine's). Every subscriber must see every event of its job once and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass, field

import aio_pika
import httpx
import orjson
from tests.support.net import free_port
from tests.support.waiting import wait_until

from bench.harness.common import AMQP_URL, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Row, percentile
from bench.harness.profiles import Profiler
from bench.harness.service import Service

SUBSCRIBE_TIMEOUT_S = 120.0


@dataclass(slots=True)
class Subscriber:
    job_id: uuid.UUID
    snapshot: asyncio.Event = field(default_factory=asyncio.Event)
    ids: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    finished: bool = False


async def _follow(http: httpx.AsyncClient, sub: Subscriber) -> None:
    async with http.stream("GET", f"/jobs/{sub.job_id}/events") as response:
        if response.status_code != 200:
            raise BenchError(f"events: {response.status_code}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            received = dt.datetime.now(dt.UTC)
            event = orjson.loads(line[5:])
            if event["id"] is None:
                sub.snapshot.set()
                continue
            sub.ids.append(event["id"])
            created = dt.datetime.fromisoformat(event["created_at"])
            sub.latencies_ms.append((received - created).total_seconds() * 1000)
            if event["type"] == "job.completed":
                sub.finished = True
                return


async def _seed_queued(ctx: Context, jobs: int, pages: int) -> list[uuid.UUID]:
    """Jobs whose pages are all published and wait for their results."""
    await ctx.conn.execute("TRUNCATE jobs, pages, dispatch_requests, job_events CASCADE")
    ids = [uuid.uuid4() for _ in range(jobs)]
    await ctx.conn.executemany(
        "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number,"
        " rendered_pages) VALUES ($1, 'events.pdf', 'application/pdf', 'queued', $2, $2)",
        [(job_id, pages) for job_id in ids],
    )
    await ctx.conn.copy_records_to_table(
        "pages",
        records=[
            (j, n, f"/nonexistent/{n}.png", "queued") for j in ids for n in range(1, pages + 1)
        ],
        columns=["job_id", "page_number", "path", "status"],
    )
    return ids


async def _send_results(ctx: Context, ids: list[uuid.UUID], pages: int, rate: float) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        started = time.perf_counter()
        sent = 0
        for number in range(1, pages + 1):
            for job_id in ids:
                body = orjson.dumps(
                    {"job_id": str(job_id), "page_number": number, "status": "done", "text": "x"}
                )
                await channel.default_exchange.publish(
                    aio_pika.Message(body), routing_key=ctx.results_queue
                )
                sent += 1
                delay = started + sent / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)


async def fan_out(
    ctx: Context, urls: list[str], subscribers: int, jobs: int, results: int, rate: float
) -> tuple[list[float], int, int]:
    """(latencies in ms, events lost, events out of order) over every subscriber."""
    pages = results // jobs
    ids = await _seed_queued(ctx, jobs, pages)
    subs = [Subscriber(ids[i % jobs]) for i in range(subscribers)]
    limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=0)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=None, limits=limits, trust_env=False)
        for url in urls
    ]
    tasks = [
        asyncio.create_task(_follow(clients[i % len(clients)], sub)) for i, sub in enumerate(subs)
    ]
    try:
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            await asyncio.gather(*(sub.snapshot.wait() for sub in subs))
        log(f"{subscribers} subscribers follow {jobs} jobs on {len(urls)} API process(es)")
        await _send_results(ctx, ids, pages, rate)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()
    expected = pages + 1  # every page.done, then job.completed
    lost = sum(max(0, expected - len(sub.ids)) for sub in subs)
    disorder = sum(
        sum(1 for a, b in zip(sub.ids, sub.ids[1:], strict=False) if b <= a) for sub in subs
    )
    return [ms for sub in subs for ms in sub.latencies_ms], lost, disorder


async def status_reads(ctx: Context, svc: Service, samples: int) -> list[float]:
    """GET /jobs/{id} latencies while uploads arrive and pages are published."""
    await svc.clear()
    seeded = await ctx.seed_realistic(ctx.plan.admin_pages)
    await svc.call("POST", "/admin/start", 202)
    stop = asyncio.Event()
    pdf = await asyncio.to_thread(ctx.geotopo.read_bytes)

    async def upload_loop() -> None:
        while not stop.is_set():
            await svc.call("POST", "/ocrpdf?dedup=false", 202, files={"file": ("g.pdf", pdf)})

    uploader = asyncio.create_task(upload_loop())
    latencies = []
    try:
        for index in range(samples):
            ms, _ = await svc.timed("GET", f"/jobs/{seeded[index % len(seeded)]}")
            latencies.append(ms)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await uploader
        await svc.stop_publishing()
    return latencies


async def run(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    del prof
    plan = ctx.plan
    args = (plan.event_subscribers, plan.event_jobs, plan.event_results, plan.event_rate)
    await svc.clear()
    latencies, lost, disorder = await fan_out(ctx, [str(svc.http.base_url)], *args)
    rows["8a"].values.append(statistics.median(latencies))
    rows["8b"].values.append(percentile(latencies, 99))
    rows["8c"].values.append(float(lost + disorder))
    second = await _second_api(ctx)
    try:
        urls = [str(svc.http.base_url), f"http://127.0.0.1:{second[1]}/api/v1"]
        latencies, lost, disorder = await fan_out(ctx, urls, *args)
        rows["8d"].values.append(percentile(latencies, 99))
        rows["8e"].values.append(float(lost + disorder))
    finally:
        second[0].terminate()
        await asyncio.to_thread(second[0].wait, 30)
    reads = await status_reads(ctx, svc, plan.latency_samples * 20)
    rows["8f"].values.append(percentile(reads, 99))


def _spawn_second_api(ctx: Context, port: int) -> subprocess.Popen[bytes]:
    with open(ctx.out / "service-second-api.log", "ab") as output:
        return subprocess.Popen(
            [str(ctx.bin / "ocr-gateway"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=ctx.service_env({}),
            cwd=ctx.out,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def _second_api(ctx: Context) -> tuple[subprocess.Popen[bytes], int]:
    """Another `ocr-gateway serve` on the same database and queues."""
    port = free_port()
    process = await asyncio.to_thread(_spawn_second_api, ctx, port)

    async def up() -> bool:
        try:
            async with httpx.AsyncClient(trust_env=False) as http:
                answer = await http.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(up, timeout=120, interval=0.2, what="the second API process")
    return process, port

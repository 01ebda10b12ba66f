"""10. Many clients: webhooks under failure, the cost of API keys, and fair dispatch.

- Webhooks: deliveries are written straight into the outbox (as the events of finished jobs
  write them) for a local receiver that answers 500 to 30% of requests at random. The sender
  runs in the API process as deployed. The receiver counts each `webhook-id` it accepted.
- Authentication: `GET /jobs/{id}` on two API processes on one database, one with
  `CLIENT_AUTH=off`, one with `api_key` and a real key, alternating request by request.
- Fairness: tenant A has a backlog of realistic pages publishing; tenant B uploads a 3-page
  PDF. No worker takes from the pages queue, so its order is the publish order: the row counts
  A's messages between the queue's depth when B's pages were rendered and B's last message.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import uuid
from collections import Counter

from tests.support.documents import blank_pdf
from tests.support.receiver import Answer, Received, Receiver
from tests.support.waiting import wait_until

from bench.harness.common import UNBOUNDED_HIGH_WATER, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Row, percentile
from bench.harness.service import Service

FAILURE_RATE = 0.3
BENCH_TENANT = "bench"
BACKLOG_TENANT = "tenant-a"
NEWCOMER_TENANT = "tenant-b"


def tenant_rows(webhooks: int, backlog: int) -> list[Row]:
    under = f"{webhooks:,} deliveries, receiver fails {FAILURE_RATE:.0%} at random"
    return [
        Row("10a", 10, "Webhook deliveries per second", under, "n"),
        Row("10b", 10, "Webhooks not delivered", under, "n", "<=", 0),
        Row("10c", 10, "Webhooks accepted twice (same webhook-id)", under, "n", "<=", 0),
        Row(
            "10d",
            10,
            "GET /jobs/{id} p99: api_key minus off",
            "two API processes, requests alternating, one key in api_key mode",
            "ms",
            "<",
            2,
        ),
        Row(
            "10e",
            10,
            "A's pages published after B's were rendered, before B's last",
            f"A: {backlog:,} pages publishing; B: 3 pages; places in the pages queue",
            "n",
            "<=",
            # A dispatcher keeps 64 pages claimed ahead of publishing (dispatch/flow.py); B's
            # pages are in the next claim, interleaved with A's.
            70,
        ),
    ]


async def run(ctx: Context, rows: dict[str, Row], webhooks: int, backlog: int) -> None:
    allow = {
        "OCR_GATEWAY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "OCR_GATEWAY_WEBHOOK_RETRY_BASE_S": "0.2",
        "OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER),
    }
    open_svc = Service(ctx, "tenants-off", allow)
    keyed_svc = Service(ctx, "tenants-key", {**allow, "OCR_GATEWAY_CLIENT_AUTH": "api_key"})
    await open_svc.start()
    try:
        await keyed_svc.start()
        try:
            await open_svc.clear()
            await _auth_cost(ctx, open_svc, keyed_svc, rows)
        finally:
            await keyed_svc.stop()
        await _fairness(ctx, open_svc, rows, backlog)
        await open_svc.clear()
        await _webhooks(ctx, rows, webhooks)  # sent by open_svc's API process
    finally:
        await open_svc.stop()


# ------------------------------------------------------------ authentication


def _create_key(ctx: Context, tenant: str) -> str:
    """A key made the way an operator makes one: `ocr-gateway keys create`."""
    done = subprocess.run(
        [str(ctx.bin / "ocr-gateway"), "keys", "create", "--tenant", tenant],
        env=ctx.service_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"keys create: {done.returncode} {done.stderr.strip()}")
    values = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    return values["key"]


async def _auth_cost(
    ctx: Context, open_svc: Service, keyed_svc: Service, rows: dict[str, Row]
) -> None:
    key = await asyncio.to_thread(_create_key, ctx, BENCH_TENANT)
    pdf = blank_pdf(1)
    headers = {"X-Tenant-Id": BENCH_TENANT}
    job = await open_svc.call(
        "POST", "/ocrpdf?dedup=false", 202, files={"file": ("one.pdf", pdf)}, headers=headers
    )
    path = f"/jobs/{job['job_id']}"
    keyed = {"Authorization": f"Bearer {key}"}
    samples = ctx.plan.latency_samples * 100
    plain: list[float] = []
    with_key: list[float] = []
    for _ in range(50):  # warm both: connections, caches, the key's first check
        await open_svc.call("GET", path, headers=headers)
        await keyed_svc.call("GET", path, headers=keyed)
    for _ in range(samples):
        started = time.perf_counter()
        await open_svc.call("GET", path, headers=headers)
        plain.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await keyed_svc.call("GET", path, headers=keyed)
        with_key.append((time.perf_counter() - started) * 1000)
    off_p99, key_p99 = percentile(plain, 99), percentile(with_key, 99)
    rows["10d"].values.append(key_p99 - off_p99)
    rows["10d"].detail = f"off p99 {off_p99:.1f} ms, api_key p99 {key_p99:.1f} ms, {samples} each"
    log(f"auth: {rows['10d'].detail}")


# ------------------------------------------------------------ fairness


async def _seed_backlog(ctx: Context, tenant: str, pages: int) -> None:
    await ctx.conn.execute(
        "INSERT INTO tenants (name, webhook_secret) VALUES ($1, 'whsec_AAAA')"
        " ON CONFLICT DO NOTHING",
        tenant,
    )
    ids = await ctx.seed_realistic(pages)
    await ctx.conn.execute("UPDATE jobs SET tenant = $1 WHERE job_id = ANY($2)", tenant, ids)
    await ctx.conn.execute("UPDATE pages SET tenant = $1 WHERE job_id = ANY($2)", tenant, ids)


async def _fairness(ctx: Context, svc: Service, rows: dict[str, Row], backlog: int) -> None:
    """Publish order is the pages queue's order (no worker takes from it here): the depth when
    B's pages are rendered marks where B's turn starts, and B's last message's place in the
    queue ends it."""
    await svc.clear()
    await _seed_backlog(ctx, BACKLOG_TENANT, backlog)
    await svc.call("POST", "/admin/start", 202)

    async def started() -> bool:
        return await ctx.count_pages("queued") >= min(200, backlog // 10)

    await wait_until(started, timeout=120, interval=0.02, what="A's backlog publishing")
    job = await svc.call(
        "POST",
        "/ocrpdf?dedup=false",
        202,
        files={"file": ("b.pdf", blank_pdf(3))},
        headers={"X-Tenant-Id": NEWCOMER_TENANT},
    )
    job_id = job["job_id"]

    async def b_rendered() -> bool:
        count = await ctx.conn.fetchval("SELECT count(*) FROM pages WHERE job_id = $1", job_id)
        return int(count) == 3

    await wait_until(b_rendered, timeout=120, interval=0.002, what="B's pages rendered")
    depth_at_render = await ctx.depth(ctx.pages_queue)
    rendered_at = time.perf_counter()

    async def b_published() -> bool:
        queued = await ctx.conn.fetchval(
            "SELECT count(*) FROM pages WHERE job_id = $1 AND status = 'queued'", job_id
        )
        return int(queued) == 3

    await wait_until(b_published, timeout=120, interval=0.005, what="B's pages published")
    waited_ms = (time.perf_counter() - rendered_at) * 1000
    await svc.stop_publishing()
    left = await ctx.count_pages("pending")
    if left == 0:
        raise BenchError("A's backlog ran out before B's pages went out; seed more pages")
    positions = await _positions_in_queue(ctx, job_id.encode("ascii"))
    ahead = positions[-1] - depth_at_render - len(positions) + 1
    rows["10e"].values.append(float(max(0, ahead)))
    rows["10e"].detail = (
        f"B's pages at places {positions} of the queue, {depth_at_render} messages deep when"
        f" they were rendered; B's last page confirmed {waited_ms:.0f} ms after that;"
        f" {left:,} of A's pages still pending"
    )
    log(f"fairness: {rows['10e'].detail}")


async def _positions_in_queue(ctx: Context, job_id: bytes) -> list[int]:
    """1-based places of `job_id`'s messages in the pages queue, read from its head (the
    messages are taken off; the queue is purged by the next section's clear)."""
    queue = await ctx.ch.declare_queue(ctx.pages_queue, passive=True)
    positions: list[int] = []
    place = 0
    while len(positions) < 3:
        message = await queue.get(no_ack=True, fail=False, timeout=10)
        if message is None:
            raise BenchError(f"B's pages not all in the queue: found {positions}")
        place += 1
        if job_id in message.body[:60]:
            positions.append(place)
    return positions


# ------------------------------------------------------------ webhooks


async def _webhooks(ctx: Context, rows: dict[str, Row], count: int) -> None:
    accepted: Counter[str] = Counter()
    chance = random.Random(20261202)

    def answer(request: Received) -> Answer:
        if chance.random() < FAILURE_RATE:
            return Answer(500)
        accepted[request.webhook_id] += 1
        return Answer(204)

    async with Receiver(decide=answer) as receiver:
        started = time.perf_counter()
        await _fill_outbox(ctx, receiver.url, count)

        async def settled() -> bool:
            pending = await ctx.conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
            )
            return int(pending) == 0

        await wait_until(settled, timeout=1800, interval=0.1, what="every delivery settled")
        elapsed = time.perf_counter() - started
    delivered = await ctx.conn.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
    )
    attempts = await ctx.conn.fetchval("SELECT sum(attempts) FROM webhook_deliveries")
    rows["10a"].values.append(count / elapsed)
    rows["10b"].values.append(float(count - len(accepted)))
    rows["10c"].values.append(float(sum(1 for n in accepted.values() if n > 1)))
    rows[
        "10a"
    ].detail = (
        f"{count:,} in {elapsed:.1f} s, {attempts:,} attempts; {delivered:,} recorded delivered"
    )
    log(f"webhooks: {rows['10a'].detail}")


async def _fill_outbox(ctx: Context, url: str, count: int) -> None:
    await ctx.conn.execute("TRUNCATE webhook_deliveries")
    records = []
    for _ in range(count):
        job_id = uuid.uuid4()
        body = {
            "type": "job.completed",
            "timestamp": "2026-12-02T00:00:00Z",
            "data": {
                "job_id": str(job_id),
                "tenant": "default",
                "status": "completed",
                "completed_pages": 1,
                "failed_pages": 0,
                "total_page_number": 1,
            },
        }
        records.append(
            (f"msg_{uuid.uuid4().hex}", "default", job_id, "job.completed", url, json.dumps(body))
        )
    await ctx.conn.executemany(
        "INSERT INTO webhook_deliveries"
        " (webhook_id, tenant, job_id, event_type, url, payload, status)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'pending')",
        records,
    )

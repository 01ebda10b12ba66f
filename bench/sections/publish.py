"""2. Publish throughput: the service against bare aio-pika and pika loops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pika
import psutil
from pamqp.commands import Basic
from tests.support.waiting import ConditionTimeout, wait_until

from bench.harness.common import AMQP_URL, LIMIT_CONCURRENCY, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Row, fmt_list, rotate
from bench.harness.profiles import Profiler
from bench.harness.service import Service, service_roles
from ocr_gateway.messaging.contracts import encode_page_message


class CpuMeter:
    """CPU seconds of the publishing process, the broker and PostgreSQL over one measurement."""

    def __init__(self, publisher_pid: int) -> None:
        self.publisher = publisher_pid
        self.before = self._read()

    def _role(self, pid: int, name: str) -> str | None:
        if pid == self.publisher:
            return "publisher"
        if name == "beam.smp":
            return "broker"
        if name.startswith("postgres"):
            return "postgres"
        return None

    def _read(self) -> dict[int, tuple[float, str, float]]:
        """pid -> (create time, role, CPU seconds) of the processes that matter here."""
        found = {}
        for proc in psutil.process_iter(["pid", "name", "cpu_times", "create_time"]):
            info = proc.info
            role = self._role(info["pid"], str(info.get("name") or ""))
            times = info.get("cpu_times")
            if role is not None and times is not None:
                found[info["pid"]] = (info["create_time"], role, times.user + times.system)
        return found

    def per_message(self, messages: int) -> dict[str, float]:
        """Milliseconds of CPU per message, by role (processes that exited are not counted)."""
        totals = {"publisher": 0.0, "broker": 0.0, "postgres": 0.0}
        for pid, (created, role, cpu) in self._read().items():
            before = self.before.get(pid)
            totals[role] += cpu - before[2] if before and before[0] == created else cpu
        return {k: 1000 * v / messages for k, v in totals.items()}


def cpu_text(samples: list[dict[str, float]]) -> str:
    if not samples:
        return "-"
    mean = {k: statistics.mean(s[k] for s in samples) for k in samples[0]}
    return (
        f"{mean['publisher']:.2f} publisher + {mean['broker']:.2f} broker +"
        f" {mean['postgres']:.2f} PostgreSQL ms CPU/msg"
    )


async def service_publish(
    ctx: Context, svc: Service, pages: int, cpu: list[dict[str, float]] | None = None
) -> float:
    """From POST /admin/start until every page is `queued` in the DB; return msg/s."""
    await svc.stop_publishing()
    await ctx.reset_pages()
    meter = CpuMeter(svc.dispatcher_pid)
    started = time.perf_counter()
    await svc.call("POST", "/admin/start", 202)

    async def all_queued() -> bool:
        return await ctx.count_pages("queued") == pages

    done = await wait_until(
        all_queued, timeout=max(120.0, pages / 20), interval=0.05, what="every page queued"
    )
    if cpu is not None:
        cpu.append(meter.per_message(pages))
    depth = await ctx.depth(ctx.pages_queue)
    if depth != pages:
        raise BenchError(f"{pages} pages queued in the DB but {depth} messages in the queue")
    # The start ends by itself once nothing is left; a stop is only the fallback.
    with contextlib.suppress(ConditionTimeout):

        async def finished() -> bool:
            return not await svc.publishing()

        await wait_until(finished, timeout=10, interval=0.1, what="the start to end")
    await svc.stop_publishing()
    await ctx.purge(ctx.pages_queue)
    return pages / (done - started)


def read_and_encode(files_dir: Path, job_id: uuid.UUID, page_number: int) -> bytes:
    """What the service does for each page before it publishes: read the PNG, build the body."""
    png = (files_dir / str(job_id) / f"{page_number}.png").read_bytes()
    return encode_page_message(job_id, page_number, png)


async def aio_pika_limit(
    ctx: Context,
    bodies: list[bytes],
    count: int,
    cpu: list[dict[str, float]] | None = None,
    make_body: Callable[[int], bytes] | None = None,
) -> float:
    """The limit: 32 coroutines publishing persistent, mandatory, confirmed messages.

    With `make_body`, each message is built when it is sent (the service's per-page work)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = channel.default_exchange
        counter = iter(range(count))
        failures = 0

        async def publisher() -> None:
            nonlocal failures
            for index in counter:
                message = aio_pika.Message(
                    make_body(index) if make_body else bodies[index % len(bodies)],
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=f"limit:{index}",
                )
                confirmation = await exchange.publish(
                    message, routing_key=ctx.limit_queue, mandatory=True, timeout=30
                )
                if not isinstance(confirmation, Basic.Ack):
                    failures += 1

        meter = CpuMeter(os.getpid())
        started = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(LIMIT_CONCURRENCY)))
        elapsed = time.perf_counter() - started
        if cpu is not None:
            cpu.append(meter.per_message(count))
    finally:
        await connection.close()
    if failures:
        raise BenchError(f"aio-pika limit: {failures} publishes not acknowledged")
    depth = await ctx.depth(ctx.limit_queue)
    await ctx.purge(ctx.limit_queue)
    if depth != count:
        raise BenchError(f"aio-pika limit: {depth} of {count} messages in the queue")
    return count / elapsed


def pika_peer(queue: str, bodies: list[bytes], count: int) -> float:
    """The peer: one BlockingConnection, confirm_delivery(), one publish at a time."""
    url = urllib.parse.urlparse(AMQP_URL)
    params = pika.ConnectionParameters(
        host=url.hostname or "127.0.0.1",
        port=url.port or 5672,
        virtual_host=urllib.parse.unquote(url.path[1:]) or "/",
        credentials=pika.PlainCredentials(url.username or "guest", url.password or "guest"),
    )
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, passive=True)
        started = time.perf_counter()
        for index in range(count):
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=bodies[index % len(bodies)],
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, message_id=f"pika:{index}"
                ),
                mandatory=True,
            )
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return count / elapsed


async def run(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    await svc.clear()
    job_ids = await ctx.seed_realistic(plan.publish_pages)
    pngs = [await asyncio.to_thread(p.read_bytes) for p in ctx.renders]
    bodies = [encode_page_message(job_ids[0], n, png) for n, png in enumerate(pngs, start=1)]
    mean_kib = statistics.mean(len(b) for b in bodies) / 1024
    service_rates: list[float] = []
    limit_rates: list[float] = []
    peer_rates: list[float] = []
    encode_rates: list[float] = []
    cpu: dict[str, list[dict[str, float]]] = {"service": [], "limit": [], "encode": [], "peer": []}
    per_job = len(ctx.renders)

    def make_body(index: int) -> bytes:
        number = index % plan.publish_pages
        job_id = job_ids[number // per_job]
        return read_and_encode(ctx.files_dir, job_id, number % per_job + 1)

    for run in range(plan.publish_runs):
        for kind in rotate(["service", "limit", "encode", "peer"], run):
            if kind == "service":
                rate = await service_publish(ctx, svc, plan.publish_pages, cpu["service"])
                service_rates.append(rate)
            elif kind == "limit":
                rate = await aio_pika_limit(ctx, bodies, plan.publish_pages, cpu["limit"])
                limit_rates.append(rate)
            elif kind == "encode":
                rate = await aio_pika_limit(
                    ctx, bodies, plan.publish_pages, cpu["encode"], make_body
                )
                encode_rates.append(rate)
            else:
                meter = CpuMeter(os.getpid())
                rate = await asyncio.to_thread(
                    pika_peer, ctx.limit_queue, bodies, plan.pika_messages
                )
                cpu["peer"].append(meter.per_message(plan.pika_messages))
                await ctx.purge(ctx.limit_queue)
                peer_rates.append(rate)
        log(
            f"publish run {run + 1}/{plan.publish_runs}: service {service_rates[-1]:.0f},"
            f" aio-pika {limit_rates[-1]:.0f} (encoding {encode_rates[-1]:.0f}),"
            f" pika {peer_rates[-1]:.0f} msg/s"
        )
    rows["2a"].values = [s / b for s, b in zip(service_rates, limit_rates, strict=True)]
    rows["2a"].detail = (
        f"messages of {mean_kib:.0f} KiB mean (base64 of the sample's gray PNGs);"
        f" service {fmt_list(service_rates, 0)} msg/s; aio-pika {fmt_list(limit_rates, 0)} msg/s;"
        f" CPU per message, mean of the runs: service {cpu_text(cpu['service'])}; aio-pika"
        f" loop {cpu_text(cpu['limit'])}"
    )
    rows["2c"].values = [s / e for s, e in zip(service_rates, encode_rates, strict=True)]
    rows["2c"].detail = (
        f"the same loop reading each PNG and building its body (base64, JSON) as it sends:"
        f" {fmt_list(encode_rates, 0)} msg/s ({cpu_text(cpu['encode'])})"
    )
    rows["2b"].values = [s / p for s, p in zip(service_rates, peer_rates, strict=True)]
    rows["2b"].detail = (
        f"pika {fmt_list(peer_rates, 0)} msg/s over {plan.pika_messages:,} messages"
        f" ({cpu_text(cpu['peer'])}); service {fmt_list(service_rates, 0)} msg/s"
    )
    if prof.wanted(rows["2a"].met is False or rows["2b"].met is False):

        async def one_publish() -> None:
            await service_publish(ctx, svc, plan.publish_pages)

        await prof.record(
            "publish through the service",
            svc.dispatcher_pid,
            one_publish,
            subprocesses=False,
            roles=service_roles(svc),
        )

        async def one_limit() -> None:
            await aio_pika_limit(ctx, bodies, plan.publish_pages)

        await prof.record(
            "publish with the bare aio-pika loop",
            os.getpid(),
            one_limit,
            subprocesses=False,
            roles={os.getpid(): "bench process"},
        )

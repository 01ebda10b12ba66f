"""7. Flow control: the queue held at its high-water mark against a slow consumer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import statistics
import subprocess
import time

import aio_pika
import psutil
from tests.support.waiting import wait_until

from bench.harness.common import AMQP_URL, MB, log
from bench.harness.context import Context
from bench.harness.plan import Row
from bench.harness.profiles import Profiler
from bench.harness.service import Service


def broker_pid() -> int | None:
    found = [
        p for p in psutil.process_iter(["name", "memory_info"]) if p.info["name"] == "beam.smp"
    ]
    if not found:
        return None
    return int(
        max(found, key=lambda p: p.info["memory_info"].rss if p.info["memory_info"] else 0).pid
    )


def rabbitmqctl_queue(queue: str) -> tuple[int, int] | None:
    """(messages_ready, memory bytes) of one queue, from `rabbitmqctl list_queues`."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        return None
    try:
        result = subprocess.run(
            [exe, "-q", "list_queues", "name", "messages_ready", "memory", "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        for item in json.loads(result.stdout or "[]"):
            if item.get("name") == queue:
                return int(item["messages_ready"]), int(item["memory"])
    except (subprocess.SubprocessError, ValueError, OSError):
        return None
    return None


class PacedConsumer:
    """A slow OCR fleet: acks the pages queue at a fixed rate, remembering message ids."""

    def __init__(self, ctx: Context, rate: float, expected: int) -> None:
        self.ctx = ctx
        self.rate = rate
        self.expected = expected
        self.ids: set[str] = set()
        self.received = 0

    async def run(self, deadline_s: float) -> None:
        connection = await aio_pika.connect(AMQP_URL, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=16)
            queue = await channel.declare_queue(self.ctx.pages_queue, passive=True)
            deadline = time.perf_counter() + deadline_s
            first: float | None = None
            async with queue.iterator() as messages:
                async for message in messages:
                    await message.ack()
                    self.received += 1
                    self.ids.add(message.message_id or "")
                    now = time.perf_counter()
                    first = first or now
                    if len(self.ids) >= self.expected or now > deadline:
                        break
                    delay = first + self.received / self.rate - now
                    if delay > 0:
                        await asyncio.sleep(delay)


async def run(
    ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler, high_water: int
) -> None:
    del prof  # the samples below are the evidence here
    plan = ctx.plan
    pages = plan.flow_pages
    await svc.clear()
    await ctx.seed_realistic(pages)
    beam = broker_pid()
    beam_before = psutil.Process(beam).memory_info().rss / MB if beam else math.nan
    depths: list[int] = []
    beam_rss: list[float] = []
    queue_memory: list[int] = []
    stop = asyncio.Event()

    async def sample_depth() -> None:
        while not stop.is_set():
            depths.append(await ctx.depth(ctx.pages_queue))
            if beam:
                with contextlib.suppress(psutil.Error):
                    beam_rss.append(psutil.Process(beam).memory_info().rss / MB)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def sample_queue_memory() -> None:
        while not stop.is_set():
            found = await asyncio.to_thread(rabbitmqctl_queue, ctx.pages_queue)
            if found is not None:
                queue_memory.append(found[1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 4.0)

    drain_bound = pages / plan.flow_rate * 2 + 60
    consumer = PacedConsumer(ctx, plan.flow_rate, pages)
    consuming = asyncio.create_task(consumer.run(drain_bound))
    samplers = [asyncio.create_task(sample_depth()), asyncio.create_task(sample_queue_memory())]
    try:
        started = time.perf_counter()
        await svc.call("POST", "/admin/start", 202)

        async def all_queued() -> bool:
            return await ctx.count_pages("queued") == pages

        published = await wait_until(
            all_queued, timeout=drain_bound, interval=0.2, what="every page queued"
        )
        await asyncio.wait_for(consuming, drain_bound)
        drained = time.perf_counter()
    finally:
        stop.set()
        await asyncio.gather(*samplers, return_exceptions=True)
        if not consuming.done():
            consuming.cancel()
            with contextlib.suppress(BaseException):
                await consuming
    await svc.stop_publishing()
    await ctx.purge(ctx.pages_queue)

    queued = await ctx.count_pages("queued")
    max_depth = max(depths)
    rows["7a"].values = [max_depth / high_water]
    rows["7a"].detail = (
        f"high-water {high_water:,}; ready messages sampled {len(depths)} times every 0.2 s:"
        f" max {max_depth:,}, median {statistics.median(depths):.0f}"
    )
    rows["7b"].values = [min(queued, len(consumer.ids)) / pages]
    rows["7b"].detail = (
        f"{queued:,} pages queued in {published - started:.1f} s, the consumer got"
        f" {len(consumer.ids):,} distinct pages ({consumer.received:,} messages) in"
        f" {drained - started:.1f} s: {len(consumer.ids) / (drained - started):.0f} msg/s for a"
        f" consumer set to {plan.flow_rate:.0f} msg/s"
    )
    if beam_rss:
        rows["7c"].values = [max(beam_rss) - beam_before]
        rows["7c"].detail = f"beam.smp RSS before {beam_before:.0f} MB, peak {max(beam_rss):.0f} MB"
    else:
        rows["7c"].status = "skipped: the broker process (beam.smp) is not visible here"
    if queue_memory:
        rows["7c"].detail += (
            f"; the pages queue's own memory (rabbitmqctl list_queues, {len(queue_memory)}"
            f" samples) peaked at {max(queue_memory) / MB:.0f} MB"
        )
    else:
        rows["7c"].detail += "; rabbitmqctl not available: queue memory not sampled"
    log(
        f"flow: max depth {max_depth} for high-water {high_water}; {queued}/{pages} queued,"
        f" consumer got {len(consumer.ids)}"
    )

"""4 + 5. Admin call latency and process memory while publishing."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import psutil

from bench.harness.common import MB, MIN_CYCLES, RESUME_BOUND_S, RESUME_TARGET_S, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Row, percentile
from bench.harness.profiles import Profiler
from bench.harness.service import Service, service_roles


@dataclass(slots=True)
class RssSamples:
    api: list[float] = field(default_factory=list)
    dispatcher: list[float] = field(default_factory=list)
    pool: list[float] = field(default_factory=list)


def rss_now(api_pid: int, dispatcher_pid: int) -> tuple[float, float, float]:
    """RSS in MB of the API process, the dispatcher process and the API's children (pools)."""
    proc = psutil.Process(api_pid)
    api = proc.memory_info().rss / MB
    dispatcher = psutil.Process(dispatcher_pid).memory_info().rss / MB
    pool = 0.0
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            pool += child.memory_info().rss / MB
    return api, dispatcher, pool


async def sample_rss(svc: Service, into: RssSamples, stop: asyncio.Event, interval: float) -> None:
    api_pid, dispatcher_pid = svc.pid, svc.dispatcher_pid
    while not stop.is_set():
        api, dispatcher, pool = rss_now(api_pid, dispatcher_pid)
        into.api.append(api)
        into.dispatcher.append(dispatcher)
        into.pool.append(pool)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def run(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    pages = plan.admin_pages
    await svc.clear()
    await ctx.seed_realistic(pages)
    await asyncio.sleep(1.0)

    idle = RssSamples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(svc, idle, stop, 0.1))
    await asyncio.sleep(plan.idle_sample_s)
    stop.set()
    await sampler
    idle_jobs = [(await svc.timed("GET", "/admin/jobs"))[0] for _ in range(plan.latency_samples)]

    busy = RssSamples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(svc, busy, stop, 0.1))
    latency: dict[str, list[float]] = {"stop": [], "start": [], "jobs": []}
    bound = max(120.0, pages / 20)
    phase_bound = max(60.0, pages / 100)

    async def queued() -> int:
        return await ctx.count_pages("queued")

    try:
        # Phase 1: one uninterrupted start; the list is read while the pages go out.
        await ctx.reset_pages()
        started = time.perf_counter()
        ms, _ = await svc.timed("POST", "/admin/start", 202)
        latency["start"].append(ms)
        for _ in range(int(bound / 0.1)):
            if await queued() == pages:
                break
            latency["jobs"].append((await svc.timed("GET", "/admin/jobs"))[0])
            await asyncio.sleep(0.1)
        else:
            raise BenchError("phase 1: not every page was queued in time")
        uninterrupted = time.perf_counter() - started

        # Phase 2: the operator stops and starts again. Each stop is sent while pages are
        # moving (a page was confirmed since the last start), so every call is measured under
        # publishing load; the time each start takes to get pages moving again is recorded.
        await svc.stop_publishing()
        await ctx.reset_pages()
        started = time.perf_counter()
        await svc.call("POST", "/admin/start", 202)
        last_start = time.perf_counter()
        done = 0
        cycles = 0
        resumes: list[float] = []
        while cycles < plan.latency_samples and time.perf_counter() - started < phase_bound:
            before = done
            deadline = time.perf_counter() + RESUME_BOUND_S
            while done == before and done < pages and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
                done = await queued()
            resumes.append(time.perf_counter() - last_start)
            if done == pages:
                if cycles >= MIN_CYCLES:
                    break
                # A small start is over at once: start the same pages again.
                await svc.stop_publishing()
                await ctx.reset_pages()
                done = 0
                await svc.call("POST", "/admin/start", 202)
                last_start = time.perf_counter()
                continue
            await asyncio.sleep(0.3)  # publishing runs a moment
            latency["jobs"].append((await svc.timed("GET", "/admin/jobs"))[0])
            latency["stop"].append((await svc.timed("POST", "/admin/stop", 202))[0])
            await asyncio.sleep(0.05)
            latency["start"].append((await svc.timed("POST", "/admin/start", 202))[0])
            last_start = time.perf_counter()
            cycles += 1
        churned = time.perf_counter() - started
        done = await queued()
    finally:
        stop.set()
        await sampler
    await svc.stop_publishing()
    # A page is queued once its confirm came; more messages than pages means a page went out
    # twice (a publish whose confirm was lost went back to pending and was sent again).
    messages = await ctx.depth(ctx.pages_queue)
    await ctx.purge(ctx.pages_queue)
    closed = await asyncio.to_thread(svc.log_count, "Closing channel")
    unconfirmed = await asyncio.to_thread(svc.log_count, "publish not confirmed")

    for key, name in (("4a", "stop"), ("4b", "start"), ("4c", "jobs")):
        values = latency[name]
        if not values:
            raise BenchError(f"no /admin/{name} call was measured")
        row = rows[key]
        row.values = [percentile(values, 99)]
        row.detail = (
            f"{len(values)} calls, p50 {percentile(values, 50):.1f} ms, max {max(values):.1f} ms"
        )
    rows["4c"].detail += f"; idle p99 {percentile(idle_jobs, 99):.1f} ms"
    rows["4a"].detail += (
        f"; {pages:,} pages were published in {uninterrupted:.1f} s by one start, then each"
        " stop/start was sent while pages were moving"
    )
    rows["4d"].values = [done / pages]
    rows["4d"].values = [max(resumes)]
    slow = sum(1 for r in resumes if r > RESUME_TARGET_S)
    rows["4d"].detail = (
        f"{len(resumes)} starts, median {statistics.median(resumes):.2f} s, {slow} over"
        f" {RESUME_TARGET_S:.0f} s (waits are cut at {RESUME_BOUND_S:.0f} s); {cycles} stop/start"
        f" cycles in {churned:.1f} s moved {done:,} of {pages:,} pages; the queue then held"
        f" {messages:,} messages ({messages - done:+,} against the pages queued, i.e. pages sent"
        f" twice); the service logged {closed} 'Closing channel' warnings and {unconfirmed}"
        " 'publish not confirmed' so far"
    )
    idle_api, idle_pool = statistics.median(idle.api), statistics.median(idle.pool)
    peak_api, peak_pool = max(busy.api), max(busy.pool)
    rows["5a"].values = [peak_api - idle_api]
    rows["5a"].detail = f"idle {idle_api:.0f} MB, peak {peak_api:.0f} MB ({len(busy.api)} samples)"
    rows["5b"].values = [peak_pool - idle_pool]
    rows["5b"].detail = f"idle {idle_pool:.0f} MB, peak {peak_pool:.0f} MB"
    idle_disp, peak_disp = statistics.median(idle.dispatcher), max(busy.dispatcher)
    rows["5c"].values = [peak_disp - idle_disp]
    rows["5c"].detail = f"idle {idle_disp:.0f} MB, peak {peak_disp:.0f} MB"
    log(
        f"admin: p99 stop {rows['4a'].values[0]:.1f}, start {rows['4b'].values[0]:.1f}, jobs"
        f" {rows['4c'].values[0]:.1f} ms; RSS API {idle_api:.0f}->{peak_api:.0f} MB,"
        f" dispatcher {idle_disp:.0f}->{peak_disp:.0f} MB, pool {idle_pool:.0f}->{peak_pool:.0f} MB"
    )
    if prof.wanted(any(rows[k].met is False for k in ("4a", "4b", "4c"))):

        async def reads_while_publishing() -> None:
            await ctx.reset_pages()
            await svc.call("POST", "/admin/start", 202)
            for _ in range(100):
                await asyncio.sleep(0.05)
                await svc.call("GET", "/admin/jobs")
            await svc.stop_publishing()
            await ctx.purge(ctx.pages_queue)

        await prof.record(
            "admin calls while publishing",
            svc.pid,
            reads_while_publishing,
            subprocesses=False,
            roles=service_roles(svc),
        )

"""16. The cost of scraping: /admin/jobs p99 while publishing, with a scraper hitting the API's
and the dispatcher's /metrics every second, against the same calls without it, in one run.

Phases alternate (without, with, without again; then the next round) on the same service and
the same seeded pages, so drift of the machine falls on both sides; each phase restarts
publishing whenever every page is queued, so every call is measured under publishing load. The
second unscraped phase against the first (16f) shows how far the p99 moves with no change at
all: on a shared 2-core machine that spread is larger than the 5% looked for. 16d-e measure
the cost itself, in CPU per scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import psutil
from tests.support.net import free_port

from bench.harness.common import UNBOUNDED_HIGH_WATER, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Plan, Row, percentile
from bench.harness.service import Service

SECTION = 16
SCRAPE_INTERVAL_S = 1.0
CALL_INTERVAL_S = 0.05


def phase_seconds(plan: Plan) -> float:
    return 6.0 if plan.quick else 20.0


def rounds(plan: Plan) -> int:
    return 2 if plan.quick else 3


def metrics_rows(plan: Plan) -> list[Row]:
    load = (
        f"{plan.admin_pages:,} pages published over and over, {rounds(plan)} x"
        f" {phase_seconds(plan):.0f} s per side, alternating"
    )
    return [
        Row(
            "16a",
            SECTION,
            "/admin/jobs p99 while publishing: scraped every 1 s / not scraped",
            f"{load}; scraper GETs API and dispatcher /metrics every second",
            "x",
            "<",
            1.05,
        ),
        Row(
            "16f",
            SECTION,
            "/admin/jobs p99 while publishing: not scraped / not scraped (noise floor)",
            f"{load}; a third phase per round, unscraped, against the first",
            "x",
        ),
        Row("16b", SECTION, "API /metrics scrape p99", "while publishing, every 1 s", "ms"),
        Row("16c", SECTION, "Dispatcher /metrics scrape p99", "while publishing, every 1 s", "ms"),
        Row(
            "16d",
            SECTION,
            "API CPU per /metrics scrape",
            f"{cpu_scrapes(plan)} scrapes 1 s apart, idle service, minus the same time unscraped",
            "ms",
        ),
        Row(
            "16e",
            SECTION,
            "Dispatcher CPU per /metrics scrape",
            f"{cpu_scrapes(plan)} scrapes 1 s apart, idle, minus the same time unscraped",
            "ms",
        ),
    ]


def cpu_scrapes(plan: Plan) -> int:
    return 8 if plan.quick else 20


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _cpu_per_scrape(svc: Service, urls: list[str], scrapes: int) -> list[float]:
    """CPU ms each process spends per scrape: a window of `scrapes` seconds with one scrape a
    second, minus an equal window without (the process's own background work)."""
    pids = [svc.pid, svc.dispatcher_pid]
    before = [_cpu_s(pid) for pid in pids]
    await asyncio.sleep(scrapes * SCRAPE_INTERVAL_S)
    quiet = [_cpu_s(pid) - b for pid, b in zip(pids, before, strict=True)]
    before = [_cpu_s(pid) for pid in pids]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        for _ in range(scrapes):
            for url in urls:
                assert (await http.get(url)).status_code == 200
            await asyncio.sleep(SCRAPE_INTERVAL_S)
    busy = [_cpu_s(pid) - b for pid, b in zip(pids, before, strict=True)]
    return [max(0.0, (b - q) * 1000 / scrapes) for b, q in zip(busy, quiet, strict=True)]


async def _scrape(urls: list[str], took: dict[str, list[float]], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        while not stop.is_set():
            for url in urls:
                started = time.perf_counter()
                response = await http.get(url)
                if response.status_code != 200 or b"ocr_gateway_build_info" not in response.content:
                    raise BenchError(f"{url} answered {response.status_code}")
                took[url].append((time.perf_counter() - started) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SCRAPE_INTERVAL_S)


async def _phase(ctx: Context, svc: Service, pages: int, seconds: float) -> list[float]:
    """/admin/jobs latencies (ms) for `seconds` of publishing, restarted whenever it is done."""
    await svc.stop_publishing()
    await ctx.reset_pages()
    await svc.call("POST", "/admin/start", 202)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        latencies.append((await svc.timed("GET", "/admin/jobs"))[0])
        await asyncio.sleep(CALL_INTERVAL_S)
        if len(latencies) % 10 == 0 and await ctx.count_pages("queued") == pages:
            await svc.stop_publishing()
            await ctx.reset_pages()
            await svc.call("POST", "/admin/start", 202)
    await svc.stop_publishing()
    await ctx.purge(ctx.pages_queue)
    return latencies


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    plan = ctx.plan
    dispatch_port = free_port()
    svc = Service(
        ctx,
        "metrics",
        {
            "OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER),
            "OCR_GATEWAY_DISPATCH_METRICS_PORT": str(dispatch_port),
        },
    )
    await svc.start()
    try:
        await svc.clear()
        pages = plan.admin_pages
        await ctx.seed_realistic(pages)
        api_url = f"http://127.0.0.1:{svc.port}/metrics"
        dispatch_url = f"http://127.0.0.1:{dispatch_port}/metrics"
        took: dict[str, list[float]] = {api_url: [], dispatch_url: []}
        without: list[float] = []
        scraped: list[float] = []
        again: list[float] = []
        seconds = phase_seconds(plan)
        for _ in range(rounds(plan)):
            without += await _phase(ctx, svc, pages, seconds)
            stop = asyncio.Event()
            scraper = asyncio.create_task(_scrape([api_url, dispatch_url], took, stop))
            try:
                scraped += await _phase(ctx, svc, pages, seconds)
            finally:
                stop.set()
                await scraper
            again += await _phase(ctx, svc, pages, seconds)
        await svc.stop_publishing()
        cpu = await _cpu_per_scrape(svc, [api_url, dispatch_url], cpu_scrapes(plan))
        await svc.clear()
    finally:
        await svc.stop()
    p99_without, p99_with = percentile(without, 99), percentile(scraped, 99)
    rows["16a"].values = [p99_with / p99_without]
    rows["16a"].detail = (
        f"p99 {p99_with:.1f} ms scraped ({len(scraped)} calls, p50"
        f" {percentile(scraped, 50):.1f}) vs {p99_without:.1f} ms not ({len(without)} calls, p50"
        f" {percentile(without, 50):.1f})"
    )
    p99_again = percentile(again, 99)
    rows["16f"].values = [p99_again / p99_without]
    rows["16f"].detail = (
        f"p99 {p99_again:.1f} ms ({len(again)} calls, p50 {percentile(again, 50):.1f}) vs"
        f" {p99_without:.1f} ms: the spread of the same measurement, with no scraper on either side"
    )
    for key, url in (("16b", api_url), ("16c", dispatch_url)):
        values = took[url]
        rows[key].values = [percentile(values, 99)]
        rows[key].detail = f"{len(values)} scrapes, p50 {percentile(values, 50):.1f} ms"
    for key, ms in zip(("16d", "16e"), cpu, strict=True):
        rows[key].values = [ms]
        rows[key].detail = f"{ms / SCRAPE_INTERVAL_S / 10:.2f}% of a core at one scrape a second"
    log(
        f"metrics: /admin/jobs p99 {p99_with:.1f} ms scraped vs {p99_without:.1f} ms not"
        f" ({p99_with / p99_without:.3f}x); scrape p99 API {rows['16b'].values[0]:.1f} ms,"
        f" dispatcher {rows['16c'].values[0]:.1f} ms; CPU per scrape API {cpu[0]:.1f} ms,"
        f" dispatcher {cpu[1]:.1f} ms"
    )

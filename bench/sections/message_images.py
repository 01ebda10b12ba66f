"""17. Publish by URL against inline: messages per second and bytes through the broker.

The same seeded pages (the sample's gray PNGs, local disk) are published by a service with
`MESSAGE_IMAGES=inline` and by one with `url`, alternating round by round, so drift of the
machine falls on both sides. Each run: `/admin/start` until every page is `queued`, then the
queue's `message_bytes` as RabbitMQ counts them, the CPU per message of the dispatcher, the
broker and PostgreSQL, then a purge. A URL moves the image's bytes to the worker's GET: 17d
measures that GET on the gateway's signed route (8 concurrent fetchers, as 8 workers would).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import orjson
from tests.support.waiting import wait_until

from bench.harness.common import UNBOUNDED_HIGH_WATER, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Plan, Row, fmt_list, percentile
from bench.harness.service import Service
from bench.sections.publish import CpuMeter, cpu_text

SECTION = 17
SECRET = "bench-secret-shared-by-the-api-and-the-dispatcher"
FETCHERS = 8


def rounds(plan: Plan) -> int:
    return 1 if plan.quick else 3


def fetches(plan: Plan) -> int:
    return 40 if plan.quick else 600


def message_image_rows(plan: Plan) -> list[Row]:
    pages = f"{plan.publish_pages:,} pages, {rounds(plan)} rounds alternating"
    return [
        Row(
            "17a",
            SECTION,
            "Publish: msg/s by URL / inline",
            f"{pages}; /admin/start until every page is queued, MESSAGE_IMAGES=url vs inline",
            "x",
        ),
        Row(
            "17b",
            SECTION,
            "Bytes through the broker per page: inline / URL",
            "the pages queue's message_bytes (rabbitmqctl) once every page is queued",
            "x",
        ),
        Row(
            "17c",
            SECTION,
            "Dispatcher CPU per message: URL / inline",
            "psutil CPU times of the dispatcher process over each run",
            "x",
        ),
        Row(
            "17d",
            SECTION,
            "Signed page route: pages/s to the workers' GETs",
            f"{fetches(plan)} GETs of URLs from the queue, {FETCHERS} at a time, url service",
            "pages/s",
        ),
    ]


async def queue_bytes(queue: str) -> int:
    """The queue's `message_bytes` (bodies only) as RabbitMQ counts them."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "list_queues",
        "-q",
        "--no-table-headers",
        "name",
        "message_bytes",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    for line in out.decode().splitlines():
        name, _, count = line.partition("\t")
        if name == queue:
            return int(count)
    raise BenchError(f"rabbitmqctl does not list the queue {queue}")


async def _publish_run(
    ctx: Context, svc: Service, pages: int, cpu: list[dict[str, float]]
) -> tuple[float, int]:
    """msg/s and bytes in the queue of one start of every page (as section 2 measures it); the
    queue is left full."""
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
    cpu.append(meter.per_message(pages))
    depth = await ctx.depth(ctx.pages_queue)
    if depth != pages:
        raise BenchError(f"{pages} pages queued in the DB but {depth} messages in the queue")
    await svc.stop_publishing()
    return pages / (done - started), await queue_bytes(ctx.pages_queue)


async def _fetch_rate(ctx: Context, count: int) -> tuple[float, list[float], int]:
    """GET `count` page URLs taken from the queue, FETCHERS at a time: pages/s, latencies (ms)
    and bytes fetched."""
    queue = await ctx.ch.declare_queue(ctx.pages_queue, passive=True)
    urls: list[str] = []
    while len(urls) < count:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            break
        urls.append(orjson.loads(message.body)["image_url"])
    if not urls:
        raise BenchError("no page message by URL in the queue")
    pending = iter(urls)
    took: list[float] = []
    fetched = 0

    async def fetcher(http: httpx.AsyncClient) -> None:
        nonlocal fetched
        for url in pending:
            started = time.perf_counter()
            response = await http.get(url)
            if response.status_code != 200:
                raise BenchError(f"GET of a page URL answered {response.status_code}")
            took.append((time.perf_counter() - started) * 1000)
            fetched += len(response.content)

    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        started = time.perf_counter()
        await asyncio.gather(*(fetcher(http) for _ in range(FETCHERS)))
        elapsed = time.perf_counter() - started
    return len(urls) / elapsed, took, fetched


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    plan = ctx.plan
    pages = plan.publish_pages
    base = {"OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER)}
    url_env = {
        **base,
        "OCR_GATEWAY_MESSAGE_IMAGES": "url",
        "OCR_GATEWAY_MESSAGE_IMAGE_URL_SECRET": SECRET,
    }
    rates: dict[str, list[float]] = {"inline": [], "url": []}
    sizes: dict[str, list[int]] = {"inline": [], "url": []}
    cpu: dict[str, list[dict[str, float]]] = {"inline": [], "url": []}
    fetch: tuple[float, list[float], int] | None = None
    seeded = False
    for number in range(rounds(plan)):
        order = ["inline", "url"] if number % 2 == 0 else ["url", "inline"]
        for mode in order:
            svc = Service(ctx, f"images-{mode}", url_env if mode == "url" else base)
            await svc.start()
            try:
                if not seeded:
                    await svc.clear()
                    await ctx.seed_realistic(pages)
                    seeded = True
                rate, size = await _publish_run(ctx, svc, pages, cpu[mode])
                rates[mode].append(rate)
                sizes[mode].append(size)
                if mode == "url" and fetch is None:
                    fetch = await _fetch_rate(ctx, fetches(plan))
                await ctx.purge(ctx.pages_queue)
            finally:
                await svc.stop()
            log(
                f"message images round {number + 1}: {mode} {rate:.0f} msg/s,"
                f" {size / pages / 1024:.2f} KiB a message"
            )
    rows["17a"].values = [u / i for u, i in zip(rates["url"], rates["inline"], strict=True)]
    rows["17a"].detail = (
        f"url {fmt_list(rates['url'], 0)} msg/s; inline {fmt_list(rates['inline'], 0)} msg/s;"
        f" CPU per message, mean of the runs: url {cpu_text(cpu['url'])}; inline"
        f" {cpu_text(cpu['inline'])}"
    )
    per_page = {mode: [s / pages for s in sizes[mode]] for mode in sizes}
    rows["17b"].values = [i / u for u, i in zip(per_page["url"], per_page["inline"], strict=True)]
    rows["17b"].detail = (
        f"url {statistics.mean(per_page['url']):,.0f} B a message, inline"
        f" {statistics.mean(per_page['inline']) / 1024:,.1f} KiB; {pages:,} pages: url"
        f" {statistics.mean(sizes['url']) / 1024**2:,.1f} MiB, inline"
        f" {statistics.mean(sizes['inline']) / 1024**2:,.1f} MiB through the broker"
    )
    dispatcher = {mode: [c["publisher"] for c in cpu[mode]] for mode in cpu}
    rows["17c"].values = [
        u / i for u, i in zip(dispatcher["url"], dispatcher["inline"], strict=True)
    ]
    rows[
        "17c"
    ].detail = (
        f"url {fmt_list(dispatcher['url'], 3)} ms; inline {fmt_list(dispatcher['inline'], 3)} ms"
    )
    if fetch is not None:
        rate, took, fetched = fetch
        rows["17d"].values = [rate]
        rows["17d"].detail = (
            f"{len(took)} GETs, p50 {percentile(took, 50):.1f} ms, p99"
            f" {percentile(took, 99):.1f} ms, {fetched / len(took) / 1024:.0f} KiB a page"
        )
    log(
        f"message images: url {statistics.median(rates['url']):.0f} msg/s vs inline"
        f" {statistics.median(rates['inline']):.0f}; bytes a message url"
        f" {statistics.mean(per_page['url']):.0f}"
        f" vs inline {statistics.mean(per_page['inline']):.0f}"
    )

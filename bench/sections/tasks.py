"""11. OCR in one call: `/image-sync` against the engine itself, a batch backlog, and Celery.

The image is page 1 of a text sample rendered at 200 DPI in grayscale (the service's own
format; 100 DPI in the smoke run, `--quick`, which also skips the warm-up calls), sent as base64
PNG in `{"image_data": ...}`; every path OCRs the same bytes with the worker's engine
(`ocr_gateway.worker.engine`, RapidOCR).

- Latency: one idle reference worker (`ocr-gateway worker`, one OCR process) behind the
  service; the same engine warm in the bench process with the same onnxruntime threads; a
  minimal Celery + Redis app (`bench/anchors/celery_ocr.py`, one prefork process). One call at a
  time, the three paths taking turns call by call, so a load from elsewhere on the machine
  weighs on all three alike.
- Throughput: 8 clients, each sending its next image when the last is answered, to one worker
  with `--processes 2`, against a bare pool of 2 processes running the engine (the worker's own
  pool, `worker.process.ocr_pool`) and against Celery with `--concurrency 2`. One worker with two
  processes rather than two workers of one: a worker shares the cores it may use between its OCR
  processes (`threads_per_process`), so two one-process workers on 2 cores would each run two
  onnxruntime threads and oversubscribe the machine, while the bare pool runs one each.
- Priority: batch pages are seeded (copies of the same page, so that the page a worker is busy
  with when a call comes costs what the call's own page costs) and published with /admin/start;
  once they are all in the pages queue, sync calls are sent at random moments relative to the
  worker's batch pages (after a random pause of up to the idle p50), as a client's would come.
  A worker cannot drop the page it is reading: a call waits for it, about half a page on
  average, then goes first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import os
import random
import re
import signal
import statistics
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image
from tests.support.waiting import wait_until

from bench.harness import bare
from bench.harness.common import (
    REPO,
    SAMPLES,
    SERVICE_START_TIMEOUT_S,
    TIMES,
    UNBOUNDED_HIGH_WATER,
    BenchError,
    log,
)
from bench.harness.context import Context
from bench.harness.files import link_pages
from bench.harness.plan import Plan, Row, percentile, rotate
from bench.harness.service import OcrWorkerProcess, Service
from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.worker.engine import OcrEngine, build_engine
from ocr_gateway.worker.process import engine_name, ocr_pool, recognize_page, threads_per_process

SAMPLE = "002-trivial-libre-office-writer.pdf"
SYNC_PATH = "/image-sync"
CALL_TIMEOUT_S = 600.0
BACKLOG_PAGES_PER_JOB = 100
THROUGHPUT_PROCESSES = 2
REDIS_URL = "redis://127.0.0.1:6379"
CELERY_DB = 11  # the anchor's own Redis database; its queue is named after the run
CELERY_POLL_S = 0.005
CELERY_STOP_S = 30.0


class RouteMissing(BenchError):
    """The service does not serve `/image-sync` (yet)."""


def task_rows(plan: Plan) -> list[Row]:
    image = f"page 1 of {SAMPLE}, {plan.sync_dpi} dpi gray, base64 PNG"
    one = f"{plan.sync_calls} calls one at a time, idle worker (1 OCR process); {image}"
    many = (
        f"{plan.sync_images} images, {plan.sync_clients} clients,"
        f" {THROUGHPUT_PROCESSES} OCR processes"
    )
    backlog = f"{plan.sync_backlog:,} batch pages in the pages queue"
    return [
        Row(
            "11a",
            11,
            "One image: engine / POST /image-sync, p50",
            f"the engine called in the bench process vs the whole call through the gateway; {one}",
            "x",
            ">=",
            0.85,
        ),
        Row("11b", 11, "POST /image-sync p50, one image, idle worker", one, "ms"),
        Row("11c", 11, "POST /image-sync p99, one image, idle worker", one, "ms"),
        Row(
            "11d",
            11,
            "Images/s: /image-sync / bare pool of the engine",
            f"{many}: one `ocr-gateway worker --processes {THROUGHPUT_PROCESSES}` vs a bare pool"
            f" of {THROUGHPUT_PROCESSES} processes running the engine; target: this bench's"
            " reading (the gateway costs at most 15%, as in 11a)",
            "x",
            ">=",
            0.85,
        ),
        Row(
            "11e",
            11,
            f"/image-sync p50 behind {plan.sync_backlog:,} batch pages / idle p50",
            f"{plan.sync_priority_calls} calls at random moments, {backlog}, one worker busy"
            " with them; vs 11b",
            "x",
            "<=",
            2,
        ),
        Row(
            "11f",
            11,
            "Celery + Redis p50, one image",
            f"apply_async().get() to a Celery worker (prefork, 1 process) running the same"
            f" engine; {one}",
            "ms",
        ),
        Row(
            "11g",
            11,
            "/image-sync p50 / Celery p50",
            "11b vs 11f, the calls taking turns; goal: faster than a Celery round trip",
            "x",
            "<",
            1,
        ),
        Row(
            "11h",
            11,
            "Images/s: /image-sync / Celery",
            f"{many}: the gateway as in 11d vs Celery --concurrency {THROUGHPUT_PROCESSES}",
            "x",
        ),
    ]


GATEWAY_ROWS = ("11a", "11b", "11c", "11d", "11e", "11g", "11h")
CELERY_ROWS = ("11f", "11g", "11h")


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    image_path = await _page_image(ctx)
    png = await asyncio.to_thread(image_path.read_bytes)
    payload = base64.b64encode(png).decode("ascii")
    with Image.open(io.BytesIO(png)) as opened:
        size = f"{opened.width}{TIMES}{opened.height}, {len(png) / 1024:.0f} KiB PNG"
    log(f"one-call OCR: {SAMPLE} page 1 at {ctx.plan.sync_dpi} dpi gray, {size}")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime loads, here and below
    bench = Bench(ctx, rows, png, payload, size)
    try:
        await bench.run()
    finally:
        await bench.close()
    problems = [p for p in (bench.gateway_error, bench.celery_error) if p]
    if bench.gateway_error:
        for key in GATEWAY_ROWS:
            rows[key].status = f"error: {bench.gateway_error}"[:200]
    if bench.celery_error:
        for key in CELERY_ROWS:
            rows[key].status = rows[key].status or f"error: {bench.celery_error}"[:200]
    if problems:
        raise BenchError("; ".join(problems))


async def _page_image(ctx: Context) -> Path:
    """Page 1 of the sample in gray, rendered by the bench's pool as the service would."""
    assert ctx.pool is not None
    out_dir = ctx.work / "sync"
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    source, dpi = str(SAMPLES / SAMPLE), ctx.plan.sync_dpi
    await ctx.pool.run(bare.render_chunk, source, "sync", [1], str(out_dir), dpi, True, timeout=120)
    return out_dir / "1.png"


class Bench:
    """The section's processes (service, workers, Celery, pools) and its measurements."""

    def __init__(
        self, ctx: Context, rows: dict[str, Row], png: bytes, payload: str, size: str
    ) -> None:
        self.ctx = ctx
        self.rows = rows
        self.png = png
        self.payload = payload
        self.size = size
        self.gateway_error: str | None = None
        self.celery_error: str | None = None
        self.svc: Service | None = None
        self.workers: list[OcrWorkerProcess] = []
        self.celery: list[CeleryAnchor] = []  # one process (latency), two (throughput)
        self.pool: ProcessPool | None = None
        self.engine: OcrEngine | None = None
        # The engine and Celery's blocking client each run on one thread of their own.
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="bench-engine")
        self.celery_thread = ThreadPoolExecutor(1, thread_name_prefix="bench-celery")
        self.engine_text = ""
        self.gateway_texts: set[str] = set()
        self.task_ids: list[str] = []
        self.warm = not ctx.plan.quick

    # ------------------------------------------------------------ the whole section

    async def run(self) -> None:
        ctx = self.ctx
        threads = threads_per_process(1)
        self.svc = Service(
            ctx, "tasks", {"OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER)}
        )
        one = OcrWorkerProcess(ctx, "one", 1)
        self.workers.append(one)
        self.celery = [
            CeleryAnchor(ctx, self.celery_thread, processes)
            for processes in (1, THROUGHPUT_PROCESSES)
        ]
        self.pool = ocr_pool("rapidocr", THROUGHPUT_PROCESSES)
        loop = asyncio.get_running_loop()
        built = loop.run_in_executor(self.engine_thread, build_engine, "rapidocr", threads)
        # Everything that is not measured against a worker of its own starts now, at once:
        # idle, a Celery worker or a pool process waits on a socket or a pipe, using no CPU.
        await asyncio.gather(
            self.svc.start(),
            one.start(),
            *(self._start_celery(anchor) for anchor in self.celery),
            self.pool.start(engine_name, timeout=SERVICE_START_TIMEOUT_S),
        )
        self.engine = await built
        await self._fresh()
        await self._latency(threads, one)
        if self.gateway_error is None:
            await self._priority(one)
        await one.stop()
        await self._throughput()

    async def close(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(Exception):
                await worker.stop()
        for anchor in self.celery:
            with contextlib.suppress(Exception):
                await anchor.stop()
            with contextlib.suppress(Exception):
                await anchor.forget()
        if self.svc is not None:
            await self.svc.stop()
        if self.pool is not None:
            self.pool.shutdown()
        self.engine_thread.shutdown(wait=False)
        self.celery_thread.shutdown(wait=False)

    async def _fresh(self) -> None:
        """Nothing pending or queued, and dispatch started (a sync call is refused while an
        operator has it stopped)."""
        assert self.svc is not None
        await self.svc.clear()
        await self.svc.call("POST", "/admin/start", 202)

    async def _start_celery(self, anchor: CeleryAnchor) -> None:
        try:
            await anchor.start(self.payload)
        except (BenchError, ImportError, OSError) as exc:
            self.celery_error = f"Celery anchor: {exc}"
            log(self.celery_error)

    # ------------------------------------------------------------ one path, one call

    async def engine_call(self) -> float:
        engine = self.engine
        assert engine is not None
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        output = await loop.run_in_executor(self.engine_thread, engine.recognize, self.png)
        elapsed = (time.perf_counter() - started) * 1000
        self.engine_text = output.text
        return elapsed

    async def gateway_call(self, client: httpx.AsyncClient | None = None) -> float:
        assert self.svc is not None
        http = client or self.svc.http
        started = time.perf_counter()
        response = await http.post(
            SYNC_PATH, json={"image_data": self.payload}, timeout=CALL_TIMEOUT_S
        )
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code in (404, 405):
            raise RouteMissing(
                f"the route is not served yet: POST /api/v1{SYNC_PATH} answered"
                f" {response.status_code}"
            )
        if response.status_code != 200:
            raise BenchError(f"POST {SYNC_PATH}: {response.status_code} {response.text[:300]}")
        body = response.json()
        if body.get("status") != "SUCCESS" or not isinstance(body.get("result"), str):
            raise BenchError(f"POST {SYNC_PATH}: unexpected answer {str(body)[:300]}")
        self.gateway_texts.add(body["result"])
        self.task_ids.append(str(body.get("task_id")))
        return elapsed

    async def celery_call(self) -> float:
        return await self.celery[0].call(self.payload)

    # ------------------------------------------------------------ latency, idle

    async def _latency(self, threads: int, worker: OcrWorkerProcess) -> None:
        rows, plan = self.rows, self.ctx.plan
        calls: dict[str, Callable[[], Awaitable[float]]] = {
            "engine": self.engine_call,
            "gateway": self.gateway_call,
        }
        if self.celery_error is None:
            calls["celery"] = self.celery_call
        times: dict[str, list[float]] = {name: [] for name in calls}
        # Warm first (models, connections, the first inference), but in the smoke run.
        measured = 0
        for number in range(-1 if self.warm else 0, plan.sync_calls):
            if number == 0:
                measured = len(self.task_ids)
            for name in rotate(list(calls), number):
                try:
                    elapsed = await calls[name]()
                except RouteMissing as exc:
                    self.gateway_error = str(exc)
                    log(str(exc))
                    del calls[name], times[name]
                    continue
                if number >= 0:
                    times[name].append(elapsed)
        engine = times["engine"]
        e50, e99 = statistics.median(engine), percentile(engine, 99)
        log(f"engine in the bench process: p50 {e50:.0f} ms, p99 {e99:.0f} ms")
        if "gateway" in times:
            gateway = times["gateway"]
            g50, g99 = statistics.median(gateway), percentile(gateway, 99)
            same = self.gateway_texts == {self.engine_text}
            rows["11a"].values.append(e50 / g50)
            rows["11a"].detail = (
                f"engine p50 {e50:.0f} ms / /image-sync p50 {g50:.0f} ms; at p99"
                f" {e99:.0f} / {g99:.0f} ms = {e99 / g99:.2f}{TIMES}; image {self.size};"
                f" {threads} onnxruntime threads on both sides; texts"
                f" {'identical' if same else 'DIFFER'} ({len(self.engine_text)} chars)"
            )
            assert self.svc is not None
            path = await asyncio.to_thread(
                _path_times, self.svc.log_path, worker.log_path, self.task_ids[measured:]
            )
            if path is not None:
                rows["11a"].detail += (
                    f"; from the service's and the worker's logs (medians): task accepted →"
                    f" the worker takes its page {path[0]:.0f} ms, the worker's OCR"
                    f" {path[1]:.0f} ms"
                )
            rows["11b"].values.append(g50)
            rows["11b"].detail = f"the engine alone: p50 {e50:.0f} ms"
            rows["11c"].values.append(g99)
            rows["11c"].detail = f"the engine alone: p99 {e99:.0f} ms"
            log(f"/image-sync: p50 {g50:.0f} ms, p99 {g99:.0f} ms; {rows['11a'].detail}")
        if "celery" in times:
            celery = times["celery"]
            c50, c99 = statistics.median(celery), percentile(celery, 99)
            rows["11f"].values.append(c50)
            rows[
                "11f"
            ].detail = f"p99 {c99:.0f} ms; the engine alone p50 {e50:.0f} ms; Redis DB {CELERY_DB}"
            if "gateway" in times:
                g50 = statistics.median(times["gateway"])
                rows["11g"].values.append(g50 / c50)
                rows["11g"].detail = (
                    f"/image-sync p50 {g50:.0f} ms vs Celery p50 {c50:.0f} ms; the engine"
                    f" alone {e50:.0f} ms"
                )
            log(f"Celery: p50 {c50:.0f} ms, p99 {c99:.0f} ms")

    # ------------------------------------------------------------ priority over a backlog

    async def _priority(self, worker: OcrWorkerProcess) -> None:
        ctx, plan, svc = self.ctx, self.ctx.plan, self.svc
        assert svc is not None
        idle = self.rows["11b"].median
        if idle is None:
            return
        before = len(await asyncio.to_thread(worker.ocr_seconds))
        await _seed_backlog(ctx, ctx.work / "sync" / "1.png", plan.sync_backlog)
        await svc.call("POST", "/admin/start", 202)

        async def published() -> bool:
            return await ctx.count_pages("pending") == 0

        await wait_until(published, timeout=600, interval=0.1, what="the backlog published")
        chance = random.Random(20261211)
        latencies: list[float] = []
        depths: list[int] = []
        for _ in range(plan.sync_priority_calls):
            await asyncio.sleep(chance.uniform(0, idle / 1000))
            depths.append(await ctx.depth(ctx.pages_queue))
            latencies.append(await self.gateway_call())
        batch = (await asyncio.to_thread(worker.ocr_seconds))[before:]
        p50 = statistics.median(latencies)
        row = self.rows["11e"]
        row.values.append(p50 / idle)
        row.detail = (
            f"p50 {p50:.0f} ms, p99 {percentile(latencies, 99):.0f} ms vs idle p50 {idle:.0f} ms;"
            f" {min(depths):,}-{max(depths):,} messages in the pages queue at each call;"
            f" the worker's pages took {statistics.median(batch) if batch else 0:.1f} s each"
            f" (median of {len(batch)}); batch pages: copies of the same page"
        )
        log(f"priority: {row.detail}")
        await worker.stop()  # before the clear, so no result of the backlog is still coming
        await self._fresh()

    # ------------------------------------------------------------ throughput

    async def _throughput(self) -> None:
        ctx, plan = self.ctx, self.ctx.plan
        clients, images = plan.sync_clients, plan.sync_images
        pool = self.pool
        assert pool is not None

        async def bare_one() -> None:
            await pool.run(recognize_page, self.payload, timeout=CALL_TIMEOUT_S)

        warm = THROUGHPUT_PROCESSES if self.warm else 0
        bare_rate = await _closed_loop(bare_one, clients, images, warm=warm)
        pool.shutdown()
        self.pool = None
        log(f"bare pool of {THROUGHPUT_PROCESSES}: {bare_rate:.3f} images/s")

        gateway_rate = None
        if self.gateway_error is None:
            two = OcrWorkerProcess(ctx, "two", THROUGHPUT_PROCESSES)
            self.workers.append(two)
            await two.start()
            gateway_rate = await _closed_loop(self.gateway_call, clients, images, warm=warm)
            await two.stop()
            row = self.rows["11d"]
            row.values.append(gateway_rate / bare_rate)
            row.detail = (
                f"/image-sync {gateway_rate:.3f} images/s vs the bare pool {bare_rate:.3f} images/s"
            )
            log(f"throughput: {row.detail}")

        if self.celery_error is None:
            # Its start sent one image to each process.
            celery_rate = await self.celery[1].throughput(self.payload, clients, images)
            log(f"Celery --concurrency {THROUGHPUT_PROCESSES}: {celery_rate:.3f} images/s")
            if gateway_rate is not None:
                row = self.rows["11h"]
                row.values.append(gateway_rate / celery_rate)
                row.detail = (
                    f"/image-sync {gateway_rate:.3f} images/s vs Celery {celery_rate:.3f}"
                    f" images/s; the bare pool {bare_rate:.3f}"
                )


def _path_times(
    service_log: Path, worker_log: Path, task_ids: list[str]
) -> tuple[float, float] | None:
    """Medians, in ms, over the tasks: from the API's `task accepted` line to the worker's
    `ocr started`, and the worker's own OCR time; None when the logs do not say."""
    wanted = set(task_ids)
    accepted: dict[str, dt.datetime] = {}
    started: dict[str, dt.datetime] = {}
    ocr: dict[str, float] = {}
    try:
        with open(service_log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                found = re.search(r"task accepted job_id=(\S+)", line)
                if found and found[1] in wanted:
                    accepted[found[1]] = _stamp(line)
        with open(worker_log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                found = re.search(r"ocr started job_id=(\S+)", line)
                if found and found[1] in wanted:
                    started[found[1]] = _stamp(line)
                found = re.search(r"ocr finished job_id=(\S+) .*seconds=([\d.]+)", line)
                if found and found[1] in wanted:
                    ocr[found[1]] = float(found[2]) * 1000
    except (OSError, ValueError):
        return None
    both = [task for task in accepted if task in started and task in ocr]
    if not both:
        return None
    waits = [(started[task] - accepted[task]).total_seconds() * 1000 for task in both]
    return statistics.median(waits), statistics.median(ocr[task] for task in both)


def _stamp(line: str) -> dt.datetime:
    """The time a log line starts with (`2026-12-02 19:08:56,046`)."""
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


async def _closed_loop(
    call: Callable[[], Awaitable[Any]], clients: int, images: int, *, warm: int
) -> float:
    """Images/s of `clients` callers each sending its next image when the last is answered,
    `images` in all, after `warm` calls at once (one per OCR process, whose first is slow)."""
    await asyncio.gather(*(call() for _ in range(warm)))
    left = images

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return images / (time.perf_counter() - started)


async def _seed_backlog(ctx: Context, image: Path, pages: int) -> list[uuid.UUID]:
    """Rendered batch jobs, every page a hard link to `image`, pending: /admin/start sends them."""
    jobs = [
        (uuid.uuid4(), min(BACKLOG_PAGES_PER_JOB, pages - first))
        for first in range(0, pages, BACKLOG_PAGES_PER_JOB)
    ]
    renders = [image]
    records = await asyncio.to_thread(link_pages, ctx.files_dir, renders, jobs)
    await ctx.conn.executemany(
        "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number,"
        " rendered_pages, render_attempts)"
        " VALUES ($1, 'backlog.pdf', 'application/pdf', 'pending', $2, $2, 1)",
        jobs,
    )
    await ctx.conn.copy_records_to_table(
        "pages", records=records, columns=["job_id", "page_number", "path", "status"]
    )
    await ctx.conn.execute("ANALYZE jobs; ANALYZE pages")
    return [job_id for job_id, _ in jobs]


# ---------------------------------------------------------------- the Celery anchor


class CeleryAnchor:
    """`celery -A bench.anchors.celery_ocr worker` as a subprocess, on Redis database
    `CELERY_DB` and a queue of this run's own, and its client, on one thread of its own."""

    def __init__(self, ctx: Context, thread: ThreadPoolExecutor, processes: int) -> None:
        self.ctx = ctx
        self.thread = thread
        self.processes = processes
        self.url = f"{REDIS_URL}/{CELERY_DB}"
        self.queue = f"bench-ocr-{ctx.run_id}-{processes}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.task: Any = None
        self.task_ids: list[str] = []

    @property
    def log_path(self) -> Path:
        return self.ctx.out / f"celery-{self.processes}.log"

    def _client(self) -> Any:
        if self.task is None:
            from bench.anchors.celery_ocr import TASK_NAME, make_app

            self.task = make_app(self.url, self.queue).tasks[TASK_NAME]
        return self.task

    async def start(self, payload: str) -> None:
        """Start the worker and wait for it: one image to each process."""
        concurrency = self.processes
        celery = self.ctx.bin / "celery"
        if not celery.exists():
            raise BenchError(f"{celery} is missing: pip install -e '.[bench]'")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")}
        env.update(
            {
                "BENCH_CELERY_URL": self.url,
                "BENCH_CELERY_QUEUE": self.queue,
                "BENCH_OCR_THREADS": str(threads_per_process(concurrency)),
                "ORT_DISABLE_TELEMETRY": "1",
                "PYTHONPATH": str(REPO),
            }
        )
        self._spawn(
            [
                str(celery),
                "-A",
                "bench.anchors.celery_ocr",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                str(concurrency),
                "-Q",
                self.queue,
                "-n",
                f"bench-{self.ctx.run_id}-{concurrency}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            env,
        )
        assert self.proc is not None
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(None, self._wait_one, payload, SERVICE_START_TIMEOUT_S)
                for _ in range(concurrency)
            )
        )
        log(
            f"Celery worker ({concurrency} processes, pid {self.proc.pid}) answering after"
            f" {time.perf_counter() - started:.1f} s"
        )

    def _spawn(self, command: list[str], env: dict[str, str]) -> None:
        with open(self.log_path, "ab") as output:
            self.proc = subprocess.Popen(
                command, env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
            )

    def _wait_one(self, payload: str, timeout: float) -> None:
        """One task to the starting worker, polled so a worker that dies is seen at once."""
        result = self._send(payload)
        deadline = time.perf_counter() + timeout
        while not result.ready():
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"the Celery worker exited; see {self.log_path}")
            if time.perf_counter() > deadline:
                raise BenchError(f"the Celery worker did not answer in {timeout:.0f} s")
            time.sleep(0.05)
        result.get(timeout=CALL_TIMEOUT_S)

    def _send(self, payload: str) -> Any:
        result = self._client().apply_async(args=[payload])
        self.task_ids.append(str(result.id))
        return result

    def _call(self, payload: str) -> float:
        started = time.perf_counter()
        self._send(payload).get(timeout=CALL_TIMEOUT_S)
        return (time.perf_counter() - started) * 1000

    async def call(self, payload: str) -> float:
        """One `apply_async(...).get()` round trip, in ms."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._call, payload)

    def _closed_loop(self, payload: str, clients: int, images: int) -> float:
        """`clients` tasks outstanding, the next sent as one is answered, `images` in all."""
        started = time.perf_counter()
        pending = [self._send(payload) for _ in range(min(clients, images))]
        sent = len(pending)
        while pending:
            for result in [r for r in pending if r.ready()]:
                result.get(timeout=CALL_TIMEOUT_S)  # raises the task's error, if any
                pending.remove(result)
                if sent < images:
                    pending.append(self._send(payload))
                    sent += 1
            time.sleep(CELERY_POLL_S)
        return images / (time.perf_counter() - started)

    async def throughput(self, payload: str, clients: int, images: int) -> float:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.thread, self._closed_loop, payload, clients, images)

    async def stop(self) -> None:
        process, self.proc = self.proc, None
        if process is None or process.poll() is not None:
            return
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)  # Celery's warm shutdown
        try:
            await asyncio.to_thread(process.wait, CELERY_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()

    async def forget(self) -> None:
        """Remove this run's queue, its bindings and its results from Redis."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            keys = [
                self.queue,
                f"_kombu.binding.{self.queue}",
                f"_kombu.binding_permanent.{self.queue}",
            ]
            keys += [f"celery-task-meta-{task_id}" for task_id in self.task_ids]
            await asyncio.to_thread(client.delete, *keys)
        finally:
            client.close()

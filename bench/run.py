"""Benchmarks of ocr-gateway: the running service against its limits and peers, side by side.

`make bench` runs this file with the project's virtualenv. The real service (`ocr-gateway serve`)
runs as a subprocess on a free localhost port with its own throw-away database
(`ocr_gateway_bench_<id>`, created and migrated here), its own queues and its files, temp files
and logs under `bench/out/<id>/`; all of it is removed at the end. Each measurement is compared in
the same run with a bare loop (the limit) or a common alternative (the peer), so every figure is a
ratio, or a latency with its target. The table gives min / median / max over the runs; a target is
judged on the median. When a target is missed, one extra run is profiled with py-spy and the
profile goes into the results file.

    python bench/run.py               # the full bench, 8-11 minutes on 2 cores
    python bench/run.py --quick       # a smoke run on a few pages, under a minute
    python bench/run.py --only 2,7    # some sections only (results go to bench/out/)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import orjson
import pika
import psutil
import pymupdf
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.messaging.amqp import dead_letter_queue, declare_queue, queue_depth

TIMES = "\u00d7"
MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
SAMPLES = REPO / "tests" / "data"
GEOTOPO = SAMPLES / "GeoTopo-komprimiert.pdf"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ROOT = "postgresql://postgres@127.0.0.1:5432"
LIMIT_CONCURRENCY = 32
SERVICE_START_TIMEOUT_S = 120.0
UNBOUNDED_HIGH_WATER = 1_000_000_000
MIN_CYCLES = 3  # stop/start cycles measured even when a small start is over at once
RESUME_BOUND_S = 40.0  # longest wait for a start to move pages (the dispatcher backs off 30 s)
STOP_BOUND_S = 15.0  # a stop should end publishing long before this
RESUME_TARGET_S = 2.0  # a start should get pages moving within a poll interval or two


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(RuntimeError):
    """A measurement could not be made (service down, a bound reached, a wrong result)."""


# ---------------------------------------------------------------- plan and rows


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each section does; `--quick` shrinks everything to a few pages."""

    quick: bool
    runs: int
    geotopo_pages: int | None  # None: the whole sample
    generated_pages: int
    peer_pages: int  # pages pdftoppm renders per run, in blocks spread over the document
    publish_pages: int
    publish_runs: int
    pika_messages: int
    upload_clients: int
    uploads_per_client: int
    idle_uploads: int
    admin_pages: int
    idle_sample_s: float
    flow_pages: int
    flow_high_water: int | None  # None: the service's default
    flow_rate: float  # messages/s the slow consumer takes
    scale_jobs: int
    scale_small_jobs: int
    scale_pages_per_job: int
    latency_samples: int


def make_plan(quick: bool, runs: int | None) -> Plan:
    if quick:
        return Plan(
            quick=True,
            runs=runs or 1,
            geotopo_pages=8,
            generated_pages=16,
            peer_pages=4,
            publish_pages=60,
            publish_runs=runs or 1,
            pika_messages=30,
            upload_clients=4,
            uploads_per_client=2,
            idle_uploads=2,
            admin_pages=200,
            idle_sample_s=1.0,
            flow_pages=150,
            flow_high_water=30,
            flow_rate=100.0,
            scale_jobs=20,
            scale_small_jobs=2,
            scale_pages_per_job=10,
            latency_samples=5,
        )
    return Plan(
        quick=False,
        runs=runs or 3,
        geotopo_pages=None,
        generated_pages=1000,
        peer_pages=16,
        publish_pages=3000,
        # Broker throughput on a shared 2-core machine swings by 30% run to run; five pairs
        # give a steadier median than three.
        publish_runs=runs or 5,
        pika_messages=1000,
        upload_clients=16,
        uploads_per_client=6,
        idle_uploads=5,
        admin_pages=10_000,
        idle_sample_s=2.0,
        flow_pages=10_000,
        flow_high_water=None,
        flow_rate=250.0,
        scale_jobs=1000,
        scale_small_jobs=10,
        scale_pages_per_job=100,
        latency_samples=20,
    )


@dataclass(slots=True)
class Row:
    key: str
    section: int
    measure: str
    compared: str
    unit: str  # "x" (ratio), "ms" or "MB"
    target_op: str | None = None  # ">=", "<", "<="
    target: float = 0.0
    values: list[float] = field(default_factory=list)
    detail: str = ""
    status: str | None = None  # "skipped: why" or "error: why"

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def met(self) -> bool | None:
        median = self.median
        if median is None or self.target_op is None:
            return None
        if self.target_op == ">=":
            return median >= self.target
        if self.target_op == "<=":
            return median <= self.target
        return median < self.target

    def fmt(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return "-"
        if self.unit == "x":
            return f"{value:.2f}{TIMES}" if value < 100 else f"{value:.0f}{TIMES}"
        if self.unit == "ms":
            return f"{value:.1f} ms"
        if self.unit == "s":
            return f"{value:.1f} s"
        return f"{value:.0f} MB"

    @property
    def target_text(self) -> str:
        if self.target_op is None:
            return "(info)"
        return f"{self.target_op} {self.fmt(self.target)}"

    @property
    def met_text(self) -> str:
        if self.status:
            return self.status
        met = self.met
        if met is None:
            return "-" if self.values else "no data"
        return "met" if met else "MISSED"


def make_rows(plan: Plan, workers: int, dpi: int, gray: bool, niceness: int) -> dict[str, Row]:
    geotopo = f"GeoTopo ({plan.geotopo_pages or 117} p)"
    generated = f"generated PDF ({plan.generated_pages:,} p)"
    mode = "gray" if gray else "RGB"
    service = "service pages/s, upload until every PNG is written and recorded"
    nice = f" at nice {niceness} like the service's render workers" if niceness else ""
    bare = f"bare PyMuPDF loop, {workers} processes{nice}, {dpi} dpi {mode}, same PNGs"
    peer = f"pdftoppm -png{' -gray' if gray else ''} -r {dpi}, one process"
    clients = f"{plan.upload_clients} clients"
    rows = [
        Row("1a", 1, f"Render {geotopo}: service / bare", f"{service} vs {bare}", "x", ">=", 0.85),
        Row("1b", 1, f"Render {geotopo}: service / pdftoppm", f"{service} vs {peer}", "x", ">=", 5),
        Row(
            "1c", 1, f"Render {generated}: service / bare", f"{service} vs {bare}", "x", ">=", 0.85
        ),
        Row(
            "1d", 1, f"Render {generated}: service / pdftoppm", f"{service} vs {peer}", "x", ">=", 5
        ),
        Row(
            "2a",
            2,
            f"Publish {plan.publish_pages:,} pages: service / aio-pika",
            "msg/s, /admin/start until every page is queued in the DB, vs a bare aio-pika loop "
            f"with {LIMIT_CONCURRENCY} confirmed publishes in flight",
            "x",
            ">=",
            0.85,
        ),
        Row(
            "2b",
            2,
            "Publish: service / pika",
            "msg/s vs pika BlockingConnection with confirm_delivery(), same messages",
            "x",
            ">=",
            2,
        ),
        Row(
            "2c",
            2,
            "Publish: service / aio-pika loop that also reads and encodes",
            "msg/s vs the aio-pika loop doing the service's per-page work: read the PNG,"
            " base64, JSON",
            "x",
        ),
        Row("3a", 3, f"Upload p50, {clients}, a job rendering", "POST /ocrpdf, GeoTopo", "ms"),
        Row(
            "3b",
            3,
            f"Upload p99, {clients}, a job rendering",
            "POST /ocrpdf, GeoTopo",
            "ms",
            "<",
            100,
        ),
        Row(
            "3c",
            3,
            "Upload p50, 1 client, a job rendering / idle",
            "same upload with nothing else running; target: this bench's reading of 'rendering"
            " must never delay the answer'",
            "x",
            "<=",
            1.5,
        ),
        Row(
            "4a",
            4,
            "/admin/stop p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4b",
            4,
            "/admin/start p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4c",
            4,
            "/admin/jobs p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4d",
            4,
            "Stop then start: slowest wait for the next confirmed page",
            "time from POST /admin/start (sent right after a stop) until one more page is"
            " queued; the target is this bench's (a start publishes at once)",
            "s",
            "<",
            RESUME_TARGET_S,
        ),
        Row(
            "5a",
            5,
            "API process RSS: peak publishing - idle",
            f"psutil every 0.1 s, {plan.admin_pages:,} pages published",
            "MB",
            "<",
            150,
        ),
        Row(
            "5b",
            5,
            "Pool processes RSS: peak publishing - idle",
            "sum over the render and inspect pools (and their resource tracker)",
            "MB",
            "<",
            150,
        ),
        Row(
            "5c",
            5,
            "Dispatcher process RSS: peak publishing - idle",
            "the process `serve` starts to publish pages (it holds the page bodies in flight)",
            "MB",
            "<",
            150,
        ),
    ]
    big = f"{plan.scale_jobs:,} jobs / {plan.scale_jobs * plan.scale_pages_per_job:,} pages"
    small = f"{plan.scale_small_jobs:,} jobs / {plan.scale_small_jobs * plan.scale_pages_per_job:,}"
    rows += [
        Row("6a", 6, f"/admin/jobs p99, {big}", "first page (limit 50)", "ms", "<", 50),
        Row("6b", 6, "/admin/jobs p99: big DB / small DB", f"same call with {small} pages", "x"),
        Row(
            "6c",
            6,
            f"/admin/start p99, {big} pending",
            "start of every pending page",
            "ms",
            "<",
            50,
        ),
        Row("6d", 6, "/admin/start p99: big DB / small DB", f"same call with {small} pages", "x"),
        Row("6e", 6, f"/admin/jobs keyset walk, {big}", "every open job, 50 per request", "ms"),
        Row(
            "7a",
            7,
            "Flow control: max ready depth / high-water",
            f"start of {plan.flow_pages:,} pages, consumer taking {plan.flow_rate:.0f} msg/s",
            "x",
            "<=",
            1.1,
        ),
        Row("7b", 7, "Flow control: pages published / started", "every page queued", "x", ">=", 1),
        Row("7c", 7, "Broker RSS: peak during the start - before", "beam.smp, psutil", "MB"),
    ]
    return {row.key: row for row in rows}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def fmt_list(values: Iterable[float], digits: int = 1) -> str:
    return "/".join(f"{v:.{digits}f}" for v in values) or "-"


def rotate(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, interval: float, what: str
) -> float:
    """Poll `check` until true; return the perf_counter time it was seen true."""
    deadline = time.perf_counter() + timeout
    while True:
        if await check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise BenchError(f"{what}: not reached within {timeout:.0f} s")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- work done in pool processes

_BARE_DOC: tuple[str, Any] | None = None


def _pool_init(niceness: int) -> None:
    """The bare loop's processes get the service's render priority, so both share alike."""
    if niceness:
        os.nice(niceness)


def _pool_warm(delay: float) -> int:
    time.sleep(delay)
    return os.getpid()


def _bare_render_chunk(
    source: str, token: str, pages: list[int], out_dir: str, dpi: int, gray: bool
) -> int:
    """The limit: one open Document per process (reopened per run token), pixmap, PNG, write."""
    global _BARE_DOC
    if _BARE_DOC is None or _BARE_DOC[0] != token:
        if _BARE_DOC is not None:
            _BARE_DOC[1].close()
        _BARE_DOC = (token, pymupdf.open(source))
    doc = _BARE_DOC[1]
    colorspace = pymupdf.csGRAY if gray else pymupdf.csRGB
    for number in pages:
        pixmap = doc.load_page(number - 1).get_pixmap(dpi=dpi, colorspace=colorspace, alpha=False)
        with open(os.path.join(out_dir, f"{number}.png"), "wb") as handle:
            handle.write(pixmap.tobytes("png"))
    return len(pages)


# ---------------------------------------------------------------- files


WORDS = [
    *("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be"),
    *("by", "on", "not", "this", "are", "or", "from", "at", "which", "but", "have", "an"),
    *("they", "were", "their", "one", "all", "we", "can", "has", "there", "been", "if", "more"),
    *("rock", "layer", "basin", "fault", "river", "survey", "map", "scale", "height", "slope"),
]


def make_generated_pdf(path: Path, pages: int) -> None:
    """Book-like text pages: a heading, 45 lines of words and a frame, deterministic."""
    rng = random.Random(4)
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 60), f"Chapter {number // 20 + 1}, page {number}", fontsize=16)
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(45))
        page.insert_textbox(pymupdf.Rect(72, 80, 523, 800), body, fontsize=10)
        page.draw_rect(pymupdf.Rect(60, 50, 535, 810), color=(0.3, 0.3, 0.3), width=0.5)
    doc.save(str(path), garbage=3, deflate=True)
    doc.close()


def make_subset_pdf(source: Path, target: Path, pages: int) -> None:
    with pymupdf.open(str(source)) as src:
        dst = pymupdf.open()
        dst.insert_pdf(src, from_page=0, to_page=pages - 1)
        dst.save(str(target))
        dst.close()


def page_count(path: Path) -> int:
    with pymupdf.open(str(path)) as doc:
        return int(doc.page_count)


def make_tiny_png(path: Path) -> None:
    pixmap = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.clear_with(255)
    path.write_bytes(pixmap.tobytes("png"))


def reset_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def clear_dir(path: Path) -> None:
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def count_files(path: Path, pattern: str) -> int:
    return sum(1 for _ in path.glob(pattern)) if path.exists() else 0


def link_pages(
    files_dir: Path, renders: list[Path], jobs: list[tuple[uuid.UUID, int]]
) -> list[tuple[uuid.UUID, int, str, str]]:
    """files/<job>/<n>.png as hard links to the rendered sample pages (copies if links fail)."""
    records = []
    for job_id, count in jobs:
        folder = files_dir / str(job_id)
        folder.mkdir(parents=True)
        for number in range(1, count + 1):
            target = folder / f"{number}.png"
            source = renders[(number - 1) % len(renders)]
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
            records.append((job_id, number, str(target), "pending"))
    return records


def page_body(job_id: uuid.UUID, page_number: int, png: bytes) -> bytes:
    """The pages-queue contract (DESIGN.md): job_id, 1-based page_number, base64 PNG."""
    import base64

    return orjson.dumps(
        {
            "job_id": str(job_id),
            "page_number": page_number,
            "image_base64": base64.b64encode(png).decode("ascii"),
        }
    )


# ---------------------------------------------------------------- the service under test


class Service:
    """`ocr-gateway serve` in a subprocess on a free port, configured by environment only."""

    def __init__(self, ctx: Context, name: str, overrides: dict[str, str]) -> None:
        self.ctx = ctx
        self.name = name
        self.overrides = overrides
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._http: httpx.AsyncClient | None = None
        self._children: list[psutil.Process] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self) -> None:
        self.port = free_port()
        env = self.ctx.service_env(self.overrides)
        log_path = self.ctx.out / f"service-{self.name}.log"
        with open(log_path, "ab") as output:
            self.proc = subprocess.Popen(
                [
                    str(self.ctx.bin / "ocr-gateway"),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=env,
                cwd=self.ctx.out,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        # trust_env=False: localhost traffic never goes through a proxy from the environment.
        self._http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}/api/v1", timeout=60, trust_env=False
        )

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "the service is not started"
        return self._http

    async def start(self) -> None:
        self._spawn()
        log(f"service '{self.name}' starting on 127.0.0.1:{self.port} (pid {self.pid})")

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(
                    f"the service exited with {self.proc.returncode}; see "
                    f"{self.ctx.out / f'service-{self.name}.log'}"
                )
            try:
                response = await self.http.get("/health", timeout=5)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json().get("status") == "ok"

        started = time.perf_counter()
        await wait_until(
            ready, timeout=SERVICE_START_TIMEOUT_S, interval=0.2, what="service health"
        )
        self._children = self.children()
        log(
            f"service '{self.name}' ready in {time.perf_counter() - started:.1f} s with "
            f"{len(self._children)} child processes"
        )

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    @property
    def dispatcher_pid(self) -> int:
        """The process that publishes: `serve`'s dispatcher child, or the API process itself
        for a service that runs its dispatcher in-process."""
        return dispatcher_child(self.children()) or self.pid

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self._http is not None:
            await self._http.aclose()
        children = self.children() or self._children
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
        for child in children:  # processes this service started, by pid
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        log(f"service '{self.name}' stopped")
        self.proc = None

    def log_count(self, text: str) -> int:
        """Lines of this service's log that contain `text`."""
        path = self.ctx.out / f"service-{self.name}.log"
        with open(path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if text in line)

    async def publishing(self) -> bool:
        response = await self.http.get("/health")
        return bool(response.json().get("publishing"))

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code != expect:
            raise BenchError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def timed(self, method: str, path: str, expect: int = 200) -> tuple[float, Any]:
        started = time.perf_counter()
        body = await self.call(method, path, expect)
        return (time.perf_counter() - started) * 1000, body

    async def stop_publishing(self, timeout: float = 60.0) -> None:
        await self.call("POST", "/admin/stop", 202)

        async def idle() -> bool:
            return not await self.publishing()

        await wait_until(idle, timeout=timeout, interval=0.1, what="publishing to stop")


# ---------------------------------------------------------------- the run's context


class Context:
    """Names, directories, connections and the bare render pool of one bench run."""

    def __init__(self, plan: Plan, keep: bool) -> None:
        self.plan = plan
        self.keep = keep
        self.run_id = uuid.uuid4().hex[:8]
        self.out = BENCH / "out" / self.run_id
        self.files_dir = self.out / "files"
        self.temp_dir = self.out / "temp"
        self.logs_dir = self.out / "logs"
        self.renders_dir = self.out / "renders"
        self.work = self.out / "work"
        self.bin = Path(sys.executable).parent
        if not (self.bin / "ocr-gateway").exists():
            self.bin = REPO / ".venv" / "bin"
        self.db_name = f"ocr_gateway_bench_{self.run_id}"
        self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}"
        self.dsn = f"{PG_ROOT}/{self.db_name}"
        self.pages_queue = f"ocr.pages.bench-{self.run_id}"
        self.results_queue = f"ocr.results.bench-{self.run_id}"
        self.limit_queue = f"ocr.pages.bench-{self.run_id}-limit"
        fields = Settings.model_fields
        # The service's own defaults, passed to it explicitly so the bare loop matches them.
        self.dpi = int(fields["render_dpi"].default)
        self.gray = bool(fields["render_grayscale"].default)
        self.chunk = int(fields["render_chunk_pages"].default)
        self.default_high_water = int(fields["queue_high_water"].default)
        self.workers = max(1, os.cpu_count() or 1)
        niceness = fields.get("render_niceness")
        self.niceness = int(niceness.default) if niceness is not None else 0
        self.settings = Settings(database_url=self.database_url, _env_file=None)  # type: ignore[call-arg]
        self.pdftoppm = shutil.which("pdftoppm")
        self.db: asyncpg.Connection | None = None
        self.amqp: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.pool: ProcessPoolExecutor | None = None
        self.geotopo = GEOTOPO
        self.generated = self.work / "generated.pdf"
        self.renders: list[Path] = []
        self.db_created = False

    # ------------------------------------------------------------ set-up and clean-up

    async def setup(self) -> None:
        if not GEOTOPO.exists():
            raise BenchError(f"{GEOTOPO} is missing from tests/data")
        for folder in (self.files_dir, self.temp_dir, self.logs_dir, self.renders_dir, self.work):
            await asyncio.to_thread(reset_dir, folder)
        log(f"run {self.run_id}: database {self.db_name}, queues {self.pages_queue}, {self.out}")
        self.db_created = await ensure_database(self.settings)
        await asyncio.to_thread(upgrade, self.settings)
        self.db = await asyncpg.connect(self.dsn, timeout=10)
        self.amqp = await aio_pika.connect(AMQP_URL, timeout=10)
        self.channel = await self.amqp.channel(publisher_confirms=True, on_return_raises=True)
        await declare_queue(self.channel, self.pages_queue)
        await declare_queue(self.channel, self.results_queue)
        await declare_queue(self.channel, self.limit_queue)

        if self.plan.geotopo_pages is not None:
            self.geotopo = self.work / f"GeoTopo-first{self.plan.geotopo_pages}.pdf"
            await asyncio.to_thread(make_subset_pdf, GEOTOPO, self.geotopo, self.plan.geotopo_pages)
        started = time.perf_counter()
        await asyncio.to_thread(make_generated_pdf, self.generated, self.plan.generated_pages)
        log(
            f"generated a {self.plan.generated_pages}-page PDF in "
            f"{time.perf_counter() - started:.1f} s"
        )

        self.pool = ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_pool_init,
            initargs=(self.niceness,),
        )
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(loop.run_in_executor(self.pool, _pool_warm, 0.5) for _ in range(self.workers))
        )
        log(f"bare render pool: {len(set(pids))} processes")
        # The sample's pages, rendered once: the realistic PNGs every publish test sends.
        pages = await asyncio.to_thread(page_count, self.geotopo)
        await self.bare_render(self.geotopo, pages, self.renders_dir, token="seed")
        self.renders = sorted(self.renders_dir.glob("*.png"), key=lambda p: int(p.stem))
        sizes = [p.stat().st_size for p in self.renders]
        log(f"sample renders: {len(sizes)} PNGs, mean {statistics.mean(sizes) / 1024:.0f} KiB")

    async def cleanup(self) -> None:
        if self.pool is not None:
            await asyncio.to_thread(self.pool.shutdown, True, cancel_futures=True)
        if self.channel is not None:
            with contextlib.suppress(Exception):
                for name in (self.pages_queue, self.results_queue, self.limit_queue):
                    for queue in (name, dead_letter_queue(name)):
                        await self.channel.queue_delete(queue)
        if self.amqp is not None:
            with contextlib.suppress(Exception):
                await self.amqp.close()
        if self.db is not None:
            with contextlib.suppress(Exception):
                await self.db.close()
        with contextlib.suppress(Exception):
            await drop_database(self.settings)
        if not self.keep:
            await asyncio.to_thread(shutil.rmtree, self.out, True)
        log(
            "cleaned up: database dropped, queues deleted"
            + ("" if self.keep else ", files removed")
        )

    def service_env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")}
        env.update(
            {
                "OCR_GATEWAY_DATABASE_URL": self.database_url,
                "OCR_GATEWAY_RABBITMQ_URL": AMQP_URL,
                "OCR_GATEWAY_PAGES_QUEUE": self.pages_queue,
                "OCR_GATEWAY_RESULTS_QUEUE": self.results_queue,
                "OCR_GATEWAY_FILES_DIR": str(self.files_dir),
                "OCR_GATEWAY_TEMP_DIR": str(self.temp_dir),
                "OCR_GATEWAY_LOGS_DIR": str(self.logs_dir),
                "OCR_GATEWAY_MAX_PAGES": str(max(5000, 2 * self.plan.generated_pages)),
                "OCR_GATEWAY_RENDER_DPI": str(self.dpi),
                "OCR_GATEWAY_RENDER_GRAYSCALE": "true" if self.gray else "false",
                "OCR_GATEWAY_RENDER_WORKERS": str(self.workers),
            }
        )
        if "run_workers" in Settings.model_fields:  # no OCR worker may drain the pages queue
            env["OCR_GATEWAY_RUN_WORKERS"] = "0"
        if "render_niceness" in Settings.model_fields:
            env["OCR_GATEWAY_RENDER_NICENESS"] = str(self.niceness)
        env.update(overrides)
        return env

    @property
    def conn(self) -> asyncpg.Connection:
        assert self.db is not None
        return self.db

    @property
    def ch(self) -> AbstractChannel:
        assert self.channel is not None
        return self.channel

    # ------------------------------------------------------------ database

    async def truncate(self) -> None:
        await self.conn.execute("TRUNCATE jobs, pages, dispatch_requests CASCADE")
        await asyncio.to_thread(clear_dir, self.files_dir)

    async def count_pages(self, status: str) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pages WHERE status = $1", status))

    async def seed_realistic(self, pages: int) -> list[uuid.UUID]:
        """Rendered jobs of one sample's pages each, PNGs hard-linked to the sample renders."""
        per_job = len(self.renders)
        jobs = [(uuid.uuid4(), min(per_job, pages - start)) for start in range(0, pages, per_job)]
        records = await asyncio.to_thread(link_pages, self.files_dir, self.renders, jobs)
        await self.conn.executemany(
            "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number,"
            " rendered_pages, render_attempts)"
            " VALUES ($1, 'seeded.pdf', 'application/pdf', 'pending', $2, $2, 1)",
            jobs,
        )
        await self.conn.copy_records_to_table(
            "pages", records=records, columns=["job_id", "page_number", "path", "status"]
        )
        await self.conn.execute("ANALYZE jobs; ANALYZE pages")
        return [job_id for job_id, _ in jobs]

    async def reset_pages(self) -> None:
        """Every page back to pending and the queue empty, so a start publishes them all again."""
        await self.conn.execute(
            "UPDATE pages SET status = 'pending', lease_until = NULL, publish_attempts = 0"
            " WHERE status <> 'pending'"
        )
        await self.conn.execute("UPDATE jobs SET status = 'pending' WHERE status <> 'pending'")
        await self.purge(self.pages_queue)

    # ------------------------------------------------------------ broker

    async def depth(self, queue: str) -> int:
        return await queue_depth(self.ch, queue)

    async def purge(self, queue: str) -> None:
        declared = await self.ch.declare_queue(queue, passive=True)
        await declared.purge()

    # ------------------------------------------------------------ bare rendering

    async def bare_render(self, source: Path, pages: int, out_dir: Path, *, token: str) -> float:
        """Render every page with the bare loop; return pages/s (pool already warm)."""
        assert self.pool is not None
        loop = asyncio.get_running_loop()
        chunks = [
            list(range(first, min(first + self.chunk, pages + 1)))
            for first in range(1, pages + 1, self.chunk)
        ]
        started = time.perf_counter()
        done = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self.pool,
                    _bare_render_chunk,
                    str(source),
                    token,
                    chunk,
                    str(out_dir),
                    self.dpi,
                    self.gray,
                )
                for chunk in chunks
            )
        )
        elapsed = time.perf_counter() - started
        if sum(done) != pages:
            raise BenchError(f"bare loop rendered {sum(done)} of {pages} pages")
        return pages / elapsed


# ---------------------------------------------------------------- CPU seen during a section


class CpuWatch:
    """How busy the machine was during a section, and how much of it other programs used."""

    SERVICES = ("beam.smp", "postgres", "erl_child_setup", "epmd", "inet_gethost")

    def __init__(self) -> None:
        self.started = 0.0
        self.system: Any = None
        self.procs: dict[int, tuple[float, float]] = {}

    @staticmethod
    def _snapshot() -> dict[int, tuple[float, float, str, int]]:
        snapshot = {}
        for proc in psutil.process_iter(["pid", "create_time", "cpu_times", "name", "ppid"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            snapshot[info["pid"]] = (
                float(info["create_time"] or 0),
                float(times.user + times.system),
                str(info.get("name") or ""),
                int(info.get("ppid") or 0),
            )
        return snapshot

    def begin(self) -> None:
        self.started = time.perf_counter()
        self.system = psutil.cpu_times()
        self.procs = {pid: (c, t) for pid, (c, t, _, _) in self._snapshot().items()}

    def end(self, own_roots: set[int]) -> str:
        wall = time.perf_counter() - self.started
        system = psutil.cpu_times()
        busy = (system.user + system.system + system.nice + getattr(system, "irq", 0)) - (
            self.system.user
            + self.system.system
            + self.system.nice
            + getattr(self.system, "irq", 0)
        )
        snapshot = self._snapshot()
        ours = set(own_roots)
        changed = True
        while changed:  # descendants of this bench and of its services
            changed = False
            for pid, (_, _, _, ppid) in snapshot.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        other = 0.0
        accounted = 0.0
        for pid, (created, cpu, name, _) in snapshot.items():
            before = self.procs.get(pid)
            delta = cpu - before[1] if before and before[0] == created else cpu
            accounted += delta
            if pid not in ours and name not in self.SERVICES and delta > 0:
                other += delta
        cores = os.cpu_count() or 1
        short_lived = max(0.0, busy - accounted)
        return (
            f"{wall:.0f} s; CPU busy {100 * busy / (wall * cores):.0f}% of {cores} cores; other"
            f" programs {100 * other / (wall * cores):.0f}%; short-lived processes (this bench's"
            f" pdftoppm/rabbitmqctl included) {100 * short_lived / (wall * cores):.0f}%; load"
            f" {os.getloadavg()[0]:.2f}"
        )


# ---------------------------------------------------------------- profiles


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short_frame(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame[:90]
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarize_profile(raw: str, roles: dict[int, str], top: int = 14) -> str:
    """Collapsed py-spy stacks → share of samples by process, by leaf frame and inclusive."""
    total = 0
    by_process: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        owner = "process"
        while frames and frames[0].startswith("process "):
            head = frames.pop(0)
            pid_text = head.split(":", 1)[0].removeprefix("process ").strip()
            pid = int(pid_text) if pid_text.isdigit() else 0
            owner = roles.get(pid, f"child {pid}")
        if not frames:
            continue
        names = [short_frame(f) for f in frames]
        total += count
        by_process[owner] += count
        leaf[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "(no samples)"
    lines = [f"samples: {total}"]
    lines.append("by process:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_process.most_common()]
    lines.append("top frames by own time (leaf):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaf.most_common(top)]
    lines.append("top frames including callees:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top + 6)]
    return "\n".join(lines)


class Profiler:
    """py-spy on a running process (and its children) while an action runs."""

    def __init__(self, ctx: Context, mode: str) -> None:
        self.ctx = ctx
        self.mode = mode
        exe = ctx.bin / "py-spy"
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")
        self.reports: list[tuple[str, str]] = []

    def wanted(self, missed: bool) -> bool:
        if self.mode == "never" or not (missed or self.mode == "always"):
            return False
        if self.exe is None:
            self.reports.append(
                ("profile unavailable", "py-spy is not installed (pip install py-spy)")
            )
            return False
        return True

    async def record(
        self,
        label: str,
        pid: int,
        action: Callable[[], Awaitable[object]],
        *,
        subprocesses: bool,
        roles: dict[int, str],
    ) -> None:
        assert self.exe is not None
        output = self.ctx.out / f"profile-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.txt"
        args = ["record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
        args += ["--output", str(output), "--nonblocking"]
        if subprocesses:
            args.append("--subprocesses")
        log(f"profiling: {label}")
        spy = await asyncio.create_subprocess_exec(
            self.exe, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await asyncio.sleep(1.5)  # attach before the action starts
        try:
            await action()
        finally:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
            try:
                _, err = await asyncio.wait_for(spy.communicate(), 60)
            except TimeoutError:
                spy.kill()
                err = b"py-spy did not stop"
        raw = await asyncio.to_thread(output.read_text) if output.exists() else ""
        summary = summarize_profile(raw, roles) if raw else f"(py-spy failed: {err[-300:]!r})"
        self.reports.append((label, summary))


def dispatcher_child(children: list[psutil.Process]) -> int | None:
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "dispatch" in child.cmdline():
                return child.pid
    return None


def service_roles(svc: Service) -> dict[int, str]:
    roles = {svc.pid: "API process (event loop and its threads)"}
    for child in svc.children():
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if "dispatch" in cmd:
                kind = "dispatcher process"
            elif "resource_tracker" in " ".join(cmd):
                kind = "resource tracker"
            else:
                kind = "pool worker"
            roles[child.pid] = f"{kind} {child.pid}"
    return roles


# ---------------------------------------------------------------- 1. render throughput


async def service_render(ctx: Context, svc: Service, name: str, data: bytes, pages: int) -> float:
    """Upload, then wait for the job's rendered_pages to reach its total; return pages/s."""
    started = time.perf_counter()
    body = await svc.call("POST", "/ocrpdf", 202, files={"file": (name, data, "application/pdf")})
    job_id = uuid.UUID(body["job_id"])
    if body["total_page_number"] != pages:
        raise BenchError(f"the service counted {body['total_page_number']} pages, not {pages}")

    async def rendered() -> bool:
        row = await ctx.conn.fetchrow(
            "SELECT rendered_pages, total_page_number, error FROM jobs WHERE job_id = $1", job_id
        )
        if row is None or row["error"]:
            raise BenchError(f"render of {name} failed: {row and row['error']}")
        return bool(row["rendered_pages"] == row["total_page_number"])

    done = await wait_until(
        rendered, timeout=max(60.0, pages * 0.5), interval=0.05, what=f"render of {name}"
    )
    # Checked through the API and on disk, outside the timed part.
    job = await svc.call("GET", f"/admin/job/{job_id}")
    files = await asyncio.to_thread(count_files, ctx.files_dir / str(job_id), "*.png")
    if job["rendered_pages"] != pages or len(job["pages"]) != pages or files != pages:
        raise BenchError(f"{name}: {job['rendered_pages']} rendered, {files} PNG files")
    await svc.call("DELETE", f"/admin/delete/job/{job_id}")
    return pages / (done - started)


def peer_blocks(pages: int, sample: int) -> list[tuple[int, int]]:
    """Blocks of up to 8 consecutive pages spread evenly over the document."""
    sample = max(1, min(sample, pages))
    blocks = math.ceil(sample / 8)
    size = math.ceil(sample / blocks)
    stride = pages / blocks
    result = []
    for index in range(blocks):
        first = 1 + int(index * stride)
        result.append((first, min(pages, first + size - 1)))
    return result


async def pdftoppm_render(
    ctx: Context, source: Path, blocks: list[tuple[int, int]], out_dir: Path
) -> float:
    assert ctx.pdftoppm is not None
    await asyncio.to_thread(reset_dir, out_dir)
    pages = sum(last - first + 1 for first, last in blocks)
    gray = ["-gray"] if ctx.gray else []
    started = time.perf_counter()
    for first, last in blocks:
        proc = await asyncio.create_subprocess_exec(
            ctx.pdftoppm,
            "-png",
            *gray,
            "-r",
            str(ctx.dpi),
            "-f",
            str(first),
            "-l",
            str(last),
            str(source),
            str(out_dir / "p"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 600)
        if proc.returncode != 0:
            raise BenchError(f"pdftoppm failed: {err.decode(errors='replace')[-300:]}")
    elapsed = time.perf_counter() - started
    written = await asyncio.to_thread(count_files, out_dir, "*.png")
    if written != pages:
        raise BenchError(f"pdftoppm wrote {written} of {pages} pages")
    return pages / elapsed


async def section_render(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    docs = [
        ("GeoTopo", ctx.geotopo, "1a", "1b"),
        ("generated", ctx.generated, "1c", "1d"),
    ]
    measured: list[tuple[str, Path, bytes, int, bool]] = []
    for name, path, bare_key, peer_key in docs:
        data = await asyncio.to_thread(path.read_bytes)
        pages = await asyncio.to_thread(page_count, path)
        blocks = peer_blocks(pages, plan.peer_pages)
        service_rates: list[float] = []
        bare_rates: list[float] = []
        peer_rates: list[float] = []
        for run in range(plan.runs):
            for kind in rotate(["service", "bare", "peer"], run):
                if kind == "service":
                    service_rates.append(await service_render(ctx, svc, path.name, data, pages))
                elif kind == "bare":
                    out = ctx.work / f"bare-{name}"
                    await asyncio.to_thread(reset_dir, out)
                    bare_rates.append(
                        await ctx.bare_render(path, pages, out, token=f"{name}-{run}")
                    )
                    await asyncio.to_thread(shutil.rmtree, out, True)
                elif ctx.pdftoppm is not None:
                    peer_rates.append(
                        await pdftoppm_render(ctx, path, blocks, ctx.work / f"peer-{name}")
                    )
            log(
                f"render {name} run {run + 1}/{plan.runs}: service {service_rates[-1]:.1f},"
                f" bare {bare_rates[-1]:.1f}"
                + (f", pdftoppm {peer_rates[-1]:.2f}" if peer_rates else "")
                + " pages/s"
            )
        rows[bare_key].values = [s / b for s, b in zip(service_rates, bare_rates, strict=True)]
        rows[bare_key].detail = (
            f"{pages} pages; service {fmt_list(service_rates)} pages/s;"
            f" bare {fmt_list(bare_rates)} pages/s"
        )
        if peer_rates:
            rows[peer_key].values = [s / p for s, p in zip(service_rates, peer_rates, strict=True)]
            covered = ", ".join(f"{a}-{b}" for a, b in blocks)
            rows[peer_key].detail = (
                f"pdftoppm {fmt_list(peer_rates, 2)} pages/s on pages {covered}"
                f" (a sample, to bound the time); service {fmt_list(service_rates)} pages/s"
            )
        else:
            rows[peer_key].status = "skipped: pdftoppm not installed (poppler-utils)"

        measured.append((name, path, data, pages, rows[bare_key].met is False))

    # One profile pair is enough to see where the service's time goes: the first document
    # that missed its target (GeoTopo first: it is the shorter run).
    missed = [m for m in measured if m[4]]
    if prof.wanted(bool(missed)) and (missed or measured):
        name, path, data, pages, _ = (missed or measured)[0]

        async def one_service_render() -> None:
            await service_render(ctx, svc, path.name, data, pages)

        await prof.record(
            f"render {name} through the service",
            svc.pid,
            one_service_render,
            subprocesses=True,
            roles=service_roles(svc),
        )
        bare_out = ctx.work / f"bare-{name}-profiled"
        await asyncio.to_thread(reset_dir, bare_out)

        async def one_bare_render() -> None:
            await ctx.bare_render(path, pages, bare_out, token="profiled")

        await prof.record(
            f"render {name} with the bare loop",
            os.getpid(),
            one_bare_render,
            subprocesses=True,
            roles={os.getpid(): "bench process"},
        )


# ---------------------------------------------------------------- 2. publish throughput


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
    with contextlib.suppress(BenchError):

        async def finished() -> bool:
            return not await svc.publishing()

        await wait_until(finished, timeout=10, interval=0.1, what="the start to end")
    await svc.stop_publishing()
    await ctx.purge(ctx.pages_queue)
    return pages / (done - started)


def read_and_encode(files_dir: Path, job_id: uuid.UUID, page_number: int) -> bytes:
    """What the service does for each page before it publishes: read the PNG, build the body."""
    png = (files_dir / str(job_id) / f"{page_number}.png").read_bytes()
    return page_body(job_id, page_number, png)


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


async def section_publish(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    await svc.stop_publishing()
    await ctx.truncate()
    await ctx.purge(ctx.pages_queue)
    job_ids = await ctx.seed_realistic(plan.publish_pages)
    pngs = [await asyncio.to_thread(p.read_bytes) for p in ctx.renders]
    bodies = [page_body(job_ids[0], n, png) for n, png in enumerate(pngs, start=1)]
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


# ---------------------------------------------------------------- 3. upload latency


async def timed_upload(svc: Service, name: str, data: bytes) -> tuple[float, uuid.UUID]:
    started = time.perf_counter()
    body = await svc.call("POST", "/ocrpdf", 202, files={"file": (name, data, "application/pdf")})
    return (time.perf_counter() - started) * 1000, uuid.UUID(body["job_id"])


@dataclass(slots=True)
class UploadRound:
    latencies: list[float]
    still_rendering: bool
    per_second: float
    api_cpu_ms: float  # API process CPU per upload (with its DELETE)
    bench_cpu_ms: float  # this bench's client CPU per upload


async def loaded_uploads(
    ctx: Context, svc: Service, data: bytes, clients: int, per_client: int
) -> UploadRound:
    """Uploads from concurrent clients while the generated PDF renders; each job is deleted."""
    generated = await asyncio.to_thread(ctx.generated.read_bytes)
    body = await svc.call(
        "POST", "/ocrpdf", 202, files={"file": ("background.pdf", generated, "application/pdf")}
    )
    background = uuid.UUID(body["job_id"])

    async def rendering() -> bool:
        done = await ctx.conn.fetchval(
            "SELECT rendered_pages FROM jobs WHERE job_id = $1", background
        )
        return bool(done)

    await wait_until(rendering, timeout=60, interval=0.05, what="background render")
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(per_client):
            latency, job_id = await timed_upload(svc, ctx.geotopo.name, data)
            latencies.append(latency)
            await svc.call("DELETE", f"/admin/delete/job/{job_id}")

    api, bench = psutil.Process(svc.pid), psutil.Process()
    api_before, bench_before = sum(api.cpu_times()[:2]), sum(bench.cpu_times()[:2])
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    api_cpu, bench_cpu = (
        sum(api.cpu_times()[:2]) - api_before,
        sum(bench.cpu_times()[:2]) - bench_before,
    )
    row = await ctx.conn.fetchrow(
        "SELECT rendered_pages, total_page_number FROM jobs WHERE job_id = $1", background
    )
    still_rendering = bool(row and row["rendered_pages"] < row["total_page_number"])
    await svc.call("DELETE", f"/admin/delete/job/{background}")
    await asyncio.sleep(1.0)  # the chunk a pool worker is on finishes and is dropped
    count = len(latencies)
    return UploadRound(
        latencies, still_rendering, count / wall, 1000 * api_cpu / count, 1000 * bench_cpu / count
    )


async def section_upload(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    await svc.stop_publishing()
    await ctx.truncate()
    data = await asyncio.to_thread(ctx.geotopo.read_bytes)
    idle: list[float] = []
    for _ in range(plan.idle_uploads):
        latency, job_id = await timed_upload(svc, ctx.geotopo.name, data)
        idle.append(latency)
        await svc.call("DELETE", f"/admin/delete/job/{job_id}")
        await asyncio.sleep(1.0)  # nothing renders during the next idle upload
    single = await loaded_uploads(ctx, svc, data, 1, plan.idle_uploads)
    loaded = await loaded_uploads(ctx, svc, data, plan.upload_clients, plan.uploads_per_client)
    p50, p99 = percentile(loaded.latencies, 50), percentile(loaded.latencies, 99)
    idle_p50, single_p50 = percentile(idle, 50), percentile(single.latencies, 50)
    log(
        f"upload: idle p50 {idle_p50:.1f} ms, 1 client while rendering p50 {single_p50:.1f} ms;"
        f" {plan.upload_clients} clients p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    rows["3a"].values = [p50]
    rows["3b"].values = [p99]
    rows["3c"].values = [single_p50 / idle_p50]
    background = "still rendering at the end" if loaded.still_rendering else "had finished"
    rows["3b"].detail = (
        f"{len(loaded.latencies)} uploads ({plan.upload_clients} clients x"
        f" {plan.uploads_per_client}), {len(data) / MB:.1f} MiB each, max"
        f" {max(loaded.latencies):.1f} ms; the background job ({plan.generated_pages} pages)"
        f" {background}. Throughput {loaded.per_second:.1f} uploads/s (each followed by its"
        f" DELETE), so with {plan.upload_clients} clients always in flight a request waits about"
        f" {plan.upload_clients}/{loaded.per_second:.0f} s = "
        f"{1000 * plan.upload_clients / loaded.per_second:.0f} ms; CPU per upload: API process"
        f" {loaded.api_cpu_ms:.1f} ms, this bench's client {loaded.bench_cpu_ms:.1f} ms"
    )
    rows["3c"].detail = (
        f"idle: {len(idle)} uploads one by one, p50 {idle_p50:.1f} ms; one client while the"
        f" {plan.generated_pages}-page job renders: {len(single.latencies)} uploads, p50"
        f" {single_p50:.1f} ms, max {max(single.latencies):.1f} ms"
    )
    if prof.wanted(rows["3b"].met is False or rows["3c"].met is False):

        async def one_round() -> None:
            await loaded_uploads(
                ctx, svc, data, plan.upload_clients, max(1, plan.uploads_per_client // 2)
            )

        await prof.record(
            "uploads under load",
            svc.pid,
            one_round,
            subprocesses=True,
            roles=service_roles(svc),
        )


# ---------------------------------------------------------------- 4 + 5. admin latency, memory


@dataclass(slots=True)
class RssSamples:
    api: list[float] = field(default_factory=list)
    dispatcher: list[float] = field(default_factory=list)
    pool: list[float] = field(default_factory=list)


def rss_now(pid: int) -> tuple[float, float, float]:
    """RSS in MB of the API process, its dispatcher process and the rest of its children."""
    proc = psutil.Process(pid)
    api = proc.memory_info().rss / MB
    dispatcher = pool = 0.0
    children = proc.children(recursive=True)
    publisher = dispatcher_child(children)
    for child in children:
        with contextlib.suppress(psutil.Error):
            rss = child.memory_info().rss / MB
            if child.pid == publisher:
                dispatcher += rss
            else:
                pool += rss
    return api, dispatcher, pool


async def sample_rss(pid: int, into: RssSamples, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        api, dispatcher, pool = rss_now(pid)
        into.api.append(api)
        into.dispatcher.append(dispatcher)
        into.pool.append(pool)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def section_admin_memory(
    ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler
) -> None:
    plan = ctx.plan
    pages = plan.admin_pages
    await svc.stop_publishing()
    await ctx.truncate()
    await ctx.purge(ctx.pages_queue)
    await ctx.seed_realistic(pages)
    await asyncio.sleep(1.0)

    idle = RssSamples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(svc.pid, idle, stop, 0.1))
    await asyncio.sleep(plan.idle_sample_s)
    stop.set()
    await sampler
    idle_jobs = [(await svc.timed("GET", "/admin/jobs"))[0] for _ in range(plan.latency_samples)]

    busy = RssSamples()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(svc.pid, busy, stop, 0.1))
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


# ---------------------------------------------------------------- 6. scale


SCALE_INSERT = """
WITH j AS (
    INSERT INTO jobs (job_id, filename, media_type, status, total_page_number, rendered_pages,
                      render_attempts, created_at, updated_at)
    SELECT gen_random_uuid(), 'bench-' || g || '.pdf', 'application/pdf', 'pending', $2, $2, 1,
           clock_timestamp(), clock_timestamp()
      FROM generate_series(1, $1) AS g
    RETURNING job_id)
INSERT INTO pages (job_id, page_number, path, status)
SELECT j.job_id, n, $3, 'pending' FROM j CROSS JOIN generate_series(1, $2) AS n
"""


@dataclass(slots=True)
class ScaleTimes:
    jobs: list[float]
    start: list[float]
    stop: list[float]
    walk_ms: float
    walk_rows: int
    walk_requests: int
    pending_counted: int


async def measure_scale(ctx: Context, svc: Service, jobs_expected: int) -> ScaleTimes:
    samples = ctx.plan.latency_samples
    # Warm the connection and the statements' plans, as a running service would have them.
    await svc.call("GET", "/admin/jobs")
    await svc.call("POST", "/admin/start", 202)
    await svc.call("POST", "/admin/stop", 202)
    jobs = []
    for _ in range(samples):
        ms, body = await svc.timed("GET", "/admin/jobs")
        jobs.append(ms)
        if len(body["items"]) != min(50, jobs_expected):
            raise BenchError(f"/admin/jobs gave {len(body['items'])} rows")
    rows_seen = 0
    requests = 0
    cursor: str | None = None
    started = time.perf_counter()
    for _ in range(jobs_expected // 50 + 2):
        requests += 1
        path = "/admin/jobs?limit=50" + (f"&cursor={cursor}" if cursor else "")
        body = await svc.call("GET", path)
        rows_seen += len(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    walk_ms = (time.perf_counter() - started) * 1000
    if rows_seen != jobs_expected:
        raise BenchError(f"the keyset walk saw {rows_seen} of {jobs_expected} jobs")
    start: list[float] = []
    stop: list[float] = []
    pending = 0
    for _ in range(max(5, samples // 2)):
        ms, body = await svc.timed("POST", "/admin/start", 202)
        start.append(ms)
        pending = int(body["pending_pages"])
        stop.append((await svc.timed("POST", "/admin/stop", 202))[0])
        await asyncio.sleep(0.1)
    return ScaleTimes(jobs, start, stop, walk_ms, rows_seen, requests, pending)


async def section_scale(
    ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler, high_water: int
) -> None:
    plan = ctx.plan
    await svc.stop_publishing()
    await ctx.truncate()
    await ctx.purge(ctx.pages_queue)
    shared_png = ctx.work / "shared-page.png"
    await asyncio.to_thread(make_tiny_png, shared_png)
    # The pages queue is filled to the high-water mark first, so the dispatcher claims nothing
    # and every start meets the same 100,000 pending pages.
    for index in range(high_water):
        await ctx.ch.default_exchange.publish(
            aio_pika.Message(b"{}", message_id=f"filler:{index}"),
            routing_key=ctx.pages_queue,
            mandatory=True,
        )
    per_job = plan.scale_pages_per_job
    await ctx.conn.execute(SCALE_INSERT, plan.scale_small_jobs, per_job, str(shared_png))
    await ctx.conn.execute("ANALYZE jobs; ANALYZE pages")
    small = await measure_scale(ctx, svc, plan.scale_small_jobs)
    started = time.perf_counter()
    await ctx.conn.execute(
        SCALE_INSERT, plan.scale_jobs - plan.scale_small_jobs, per_job, str(shared_png)
    )
    await ctx.conn.execute("ANALYZE jobs; ANALYZE pages")
    inserted = time.perf_counter() - started
    big = await measure_scale(ctx, svc, plan.scale_jobs)
    total_pages = plan.scale_jobs * per_job
    pending = await ctx.count_pages("pending")
    if pending != total_pages or big.pending_counted != total_pages:
        raise BenchError(f"{pending} pages pending, start counted {big.pending_counted}")
    # The numbers above stand either way; a session that does not end after the stop is a
    # fault of its own, reported with them.
    try:
        await svc.stop_publishing(timeout=STOP_BOUND_S)
        stopped = "publishing ended after the last stop"
    except BenchError:
        stopped = (
            f"FAULT: {STOP_BOUND_S:.0f} s after the last stop /health still reported"
            " publishing=true (the session, stopped while the queue was at its high-water"
            " mark, never ended)"
        )
        log(f"scale: {stopped}")
    await ctx.purge(ctx.pages_queue)

    big_jobs, small_jobs = percentile(big.jobs, 99), percentile(small.jobs, 99)
    big_start, small_start = percentile(big.start, 99), percentile(small.start, 99)
    rows["6a"].values = [big_jobs]
    rows["6a"].detail = (
        f"50 rows per answer, {len(big.jobs)} calls, p50 {percentile(big.jobs, 50):.1f} ms;"
        f" the {plan.scale_jobs - plan.scale_small_jobs:,} jobs and their pages were inserted"
        f" by one INSERT ... SELECT generate_series in {inserted:.1f} s, every page row"
        f" pointing at one shared 64x64 PNG (the dispatcher never reads it: the queue is held"
        f" at the high-water mark)"
    )
    rows["6b"].values = [big_jobs / small_jobs]
    rows["6b"].detail = f"small DB p99 {small_jobs:.1f} ms"
    rows["6c"].values = [big_start]
    rows["6c"].detail = (
        f"{len(big.start)} calls, each answering pending_pages={big.pending_counted:,};"
        f" p50 {percentile(big.start, 50):.1f} ms; /admin/stop p99 {percentile(big.stop, 99):.1f}"
        f" ms; {stopped}"
    )
    rows["6d"].values = [big_start / small_start]
    rows["6d"].detail = f"small DB p99 {small_start:.1f} ms ({small.pending_counted:,} pending)"
    rows["6e"].values = [big.walk_ms]
    rows["6e"].detail = (
        f"{big.walk_rows:,} rows in {big.walk_requests} requests,"
        f" {big.walk_ms / big.walk_requests:.1f} ms each; small DB {small.walk_ms:.1f} ms"
    )
    log(
        f"scale: jobs p99 {small_jobs:.1f} -> {big_jobs:.1f} ms, start p99 {small_start:.1f} ->"
        f" {big_start:.1f} ms, walk {big.walk_ms:.0f} ms"
    )
    if prof.wanted(rows["6a"].met is False or rows["6c"].met is False):
        # The count /admin/start runs (repository.count_startable_pages), run again by hand.
        plan_text = await ctx.conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM pages WHERE status = 'pending'"
        )
        prof.reports.append(
            (
                "scale: the count of pending pages behind /admin/start",
                "\n".join(r[0] for r in plan_text),
            )
        )


# ---------------------------------------------------------------- 7. flow control


def broker_pid() -> int | None:
    found = [
        p for p in psutil.process_iter(["name", "memory_info"]) if p.info["name"] == "beam.smp"
    ]
    if not found:
        return None
    return max(found, key=lambda p: p.info["memory_info"].rss if p.info["memory_info"] else 0).pid


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


async def section_flow(
    ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler, high_water: int
) -> None:
    del prof  # the samples below are the evidence here
    plan = ctx.plan
    pages = plan.flow_pages
    await svc.stop_publishing()
    await ctx.truncate()
    await ctx.purge(ctx.pages_queue)
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


# ---------------------------------------------------------------- machine, versions, report


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "CPU": model,
        "nproc": str(os.cpu_count()),
        "RAM": f"{psutil.virtual_memory().total / 1024**3:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
    }


def source_state() -> str:
    """The commit measured, and whether src/ differs from it (read-only git calls)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    if not dirty:
        return f"commit {commit}"
    return f"commit {commit} with {len(dirty)} changed or new path(s) under src/ not committed"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


async def versions(ctx: Context) -> dict[str, str]:
    result = {
        "ocr-gateway": f"{package_version('ocr-gateway')}, {await asyncio.to_thread(source_state)}",
        "Python": platform.python_version(),
        "PyMuPDF": f"{pymupdf.__version__} (MuPDF {getattr(pymupdf, 'mupdf_version', '?')})",
        "aio-pika": package_version("aio-pika"),
        "aiormq": package_version("aiormq"),
        "pika": package_version("pika"),
        "uvicorn": package_version("uvicorn"),
        "FastAPI": package_version("fastapi"),
        "PostgreSQL": str(await ctx.conn.fetchval("SHOW server_version")),
    }
    rabbit = "unknown"
    transport = getattr(ctx.amqp, "transport", None)
    props = getattr(transport, "server_properties", None) or getattr(
        getattr(transport, "connection", None), "server_properties", None
    )
    if isinstance(props, dict):
        version = props.get("version", rabbit)
        rabbit = version.decode() if isinstance(version, bytes) else str(version)
    result["RabbitMQ"] = rabbit
    if ctx.pdftoppm:
        proc = await asyncio.create_subprocess_exec(
            ctx.pdftoppm, "-v", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        result["poppler (pdftoppm)"] = out.decode(errors="replace").splitlines()[0].split()[-1]
    else:
        result["poppler (pdftoppm)"] = "not installed"
    spy = ctx.bin / "py-spy"
    result["py-spy"] = package_version("py-spy") if spy.exists() else "not installed"
    return result


def table(rows: Iterable[Row], runs: dict[int, int]) -> str:
    lines = [
        "| id | measure | runs | min | median | max | target | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        values = row.values
        lo = min(values) if values else None
        hi = max(values) if values else None
        count = len(values) if values else runs.get(row.section, 0)
        lines.append(
            f"| {row.key} | {row.measure} | {count} | {row.fmt(lo)} | {row.fmt(row.median)} |"
            f" {row.fmt(hi)} | {row.target_text} | {row.met_text} |"
        )
    return "\n".join(lines)


def report(
    ctx: Context,
    rows: dict[str, Row],
    header: dict[str, dict[str, str]],
    sections: dict[int, str],
    profiles: list[tuple[str, str]],
    started: dt.datetime,
    elapsed: float,
    command: str,
) -> str:
    plan = ctx.plan
    runs = {1: plan.runs, 2: plan.publish_runs, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}
    out = [
        "# ocr-gateway benchmark results",
        "",
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes"
        + (" (quick smoke run: a few pages, numbers not meaningful)" if plan.quick else ""),
        "",
        "Every figure was measured in this one run, the service side by side with its limit or",
        "peer; `runs` is how many times each pair was measured and min / median / max are over",
        "those runs. A target is judged on the median. Latency rows give the percentile over all",
        "the calls of the run.",
        "",
        table(rows.values(), runs),
        "",
        "## Machine and versions",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in header["machine"].items()]
    out += [f"- {k}: {v}" for k, v in header["versions"].items()]
    out += [
        "",
        "## What was compared",
        "",
    ]
    for row in rows.values():
        text = f"- **{row.key}** {row.compared}."
        if row.detail:
            text += f" {row.detail}."
        out.append(text)
    out += ["", "## Load on the machine during each section", ""]
    out += [f"- section {num}: {text}" for num, text in sorted(sections.items())]
    missed = [row for row in rows.values() if row.met is False]
    errors = [row for row in rows.values() if row.status and row.status.startswith("error")]
    out += ["", "## Targets missed", ""]
    if not missed and not errors:
        out.append("None.")
    for row in missed:
        out.append(
            f"- **{row.key}** {row.measure}: median {row.fmt(row.median)}, target"
            f" {row.target_text}."
        )
    for row in errors:
        out.append(f"- **{row.key}** could not be measured: {row.status}.")
    if profiles:
        out += ["", "## Profiles", ""]
        out.append(
            "py-spy (`record --nonblocking --rate 100`, collapsed stacks summarized), one extra"
            " run each, not counted in the table."
        )
        for label, summary in profiles:
            out += ["", f"### {label}", "", "```text", summary, "```"]
    out += [
        "",
        "## Method",
        "",
        f"- Service: `ocr-gateway serve` on 127.0.0.1, database `ocr_gateway_bench_<id>`, queues"
        f" `ocr.pages.bench-<id>`, render settings passed explicitly: {ctx.workers} render"
        f" workers (the default: one per CPU), {ctx.dpi} dpi, grayscale {ctx.gray}; the other"
        " settings are the defaults except where a section says otherwise.",
        "- Render: the clock runs from the upload request until the job's row shows every page"
        " rendered (polled every 50 ms in PostgreSQL, the counter `GET /admin/job/{id}` reads),"
        " then the API answer and the PNG files are checked. The bare loop is a warm spawn pool"
        f" of {ctx.workers} processes, one open Document each, chunks of {ctx.chunk} pages,"
        " `get_pixmap` + `tobytes('png')` + write; pdftoppm renders a sample of pages (blocks"
        " spread over the document) because it is slow. The order of the three rotates per run.",
        "- Publish: pages are seeded as rendered jobs, PNGs hard-linked to the sample's renders;"
        " the high-water mark is set above the page count so nothing throttles. The clock runs"
        " from POST /admin/start until every page is `queued` in the DB (polled every 50 ms). The"
        " aio-pika and pika loops publish the same message bodies (the sample's pages in the"
        " pages-queue format) to a queue declared like the pages queue; connection set-up is"
        " not timed.",
        "- Upload: GeoTopo from concurrent httpx clients while the generated PDF renders; each"
        " new job is deleted once answered, so the render load stays one job.",
        "- Admin and memory: one start of every page with GET /admin/jobs every 0.1 s, then"
        " stop/start pairs, each sent once the previous start had moved a page (the wait is row"
        " 4d); RSS sampled every 0.1 s throughout.",
        "- Scale: the pages queue is held at its high-water mark so that no page moves while"
        " /admin/start and /admin/jobs are called; the small DB is 1% of the big one.",
        "- Flow control: the service's default high-water mark"
        + (f" (quick run: {plan.flow_high_water})" if plan.flow_high_water else "")
        + f", a consumer acking {plan.flow_rate:.0f} msg/s, queue depth sampled every 0.2 s.",
    ]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main


SECTION_ROWS = {
    1: ("1a", "1b", "1c", "1d"),
    2: ("2a", "2b", "2c"),
    3: ("3a", "3b", "3c"),
    4: ("4a", "4b", "4c", "4d", "5a", "5b", "5c"),
    6: ("6a", "6b", "6c", "6d", "6e"),
    7: ("7a", "7b", "7c"),
}


async def main_async(args: argparse.Namespace) -> int:
    plan = make_plan(args.quick, args.runs)
    wanted = {int(s) for s in args.only.split(",")} if args.only else {1, 2, 3, 4, 5, 6, 7}
    if 5 in wanted:
        wanted.add(4)
    ctx = Context(plan, args.keep)
    rows = make_rows(plan, ctx.workers, ctx.dpi, ctx.gray, ctx.niceness)
    prof = Profiler(ctx, "never" if plan.quick and args.profile == "auto" else args.profile)
    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    section_notes: dict[int, str] = {}
    header: dict[str, dict[str, str]] = {"machine": machine(), "versions": {}}
    failures = 0
    for num, keys in SECTION_ROWS.items():
        if num not in wanted:
            for key in keys:
                rows[key].status = "not run (--only)"

    async def guarded(num: int, svc: Service, work: Callable[[], Awaitable[None]]) -> None:
        nonlocal failures
        if num not in wanted:
            return
        watch = CpuWatch()
        watch.begin()
        log(f"section {num} starts")
        try:
            await work()
        except Exception as exc:
            failures += 1
            traceback.print_exc()
            for key in SECTION_ROWS[num]:
                if not rows[key].values:
                    rows[key].status = f"error: {exc}"[:200]
        pids = {os.getpid()} | ({svc.pid} if svc.proc is not None else set())
        section_notes[num] = watch.end(pids)
        log(f"section {num} done: {section_notes[num]}")

    try:
        await ctx.setup()
        header["versions"] = await versions(ctx)
        if wanted & {1, 2, 3, 4}:
            open_svc = Service(
                ctx, "unthrottled", {"OCR_GATEWAY_QUEUE_HIGH_WATER": str(UNBOUNDED_HIGH_WATER)}
            )
            await open_svc.start()
            try:
                await guarded(1, open_svc, lambda: section_render(ctx, open_svc, rows, prof))
                await guarded(2, open_svc, lambda: section_publish(ctx, open_svc, rows, prof))
                await guarded(4, open_svc, lambda: section_admin_memory(ctx, open_svc, rows, prof))
                await guarded(3, open_svc, lambda: section_upload(ctx, open_svc, rows, prof))
            finally:
                await open_svc.stop()
        if wanted & {6, 7}:
            high_water = plan.flow_high_water or ctx.default_high_water
            overrides = {}
            if plan.flow_high_water:
                overrides["OCR_GATEWAY_QUEUE_HIGH_WATER"] = str(plan.flow_high_water)
            default_svc = Service(ctx, "default", overrides)
            await default_svc.start()
            try:
                await guarded(
                    7, default_svc, lambda: section_flow(ctx, default_svc, rows, prof, high_water)
                )
                await guarded(
                    6, default_svc, lambda: section_scale(ctx, default_svc, rows, prof, high_water)
                )
            finally:
                await default_svc.stop()
    except Exception as exc:
        failures += 1
        traceback.print_exc()
        for row in rows.values():
            if not row.values and not row.status:
                row.status = f"error: {exc}"[:200]
    finally:
        await ctx.cleanup()

    elapsed = time.perf_counter() - started
    command = "python bench/run.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    text = report(
        ctx, rows, header, section_notes, prof.reports, started_at, elapsed, command.strip()
    )
    runs = {1: plan.runs, 2: plan.publish_runs}
    print()
    print(table(rows.values(), runs))
    print()
    results = Path(args.results) if args.results else default_results(args)
    await asyncio.to_thread(write_text, results, text)
    log(f"results written to {results} ({elapsed / 60:.1f} minutes)")
    return 1 if failures else 0


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def default_results(args: argparse.Namespace) -> Path:
    if args.quick:
        return BENCH / "out" / "RESULTS-quick.md"
    if args.only or args.runs:
        return BENCH / "out" / "RESULTS-partial.md"
    return BENCH / "RESULTS.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run on a few pages")
    parser.add_argument("--runs", type=int, help="runs per pair in sections 1 and 2 (default 3, 5)")
    parser.add_argument("--only", help="comma-separated sections, e.g. 1,2 (5 runs with 4)")
    parser.add_argument(
        "--results", help="where to write the results (default bench/RESULTS.md for a full run)"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy profile of an extra run: when a target is missed (auto), always, never",
    )
    parser.add_argument("--keep", action="store_true", help="keep bench/out/<id> (logs, profiles)")
    args = parser.parse_args(argv)
    if args.only and not re.fullmatch(r"[1-7](,[1-7])*", args.only):
        parser.error("--only takes section numbers 1-7, comma-separated")
    if args.runs is not None and not 1 <= args.runs <= 20:
        parser.error("--runs must be between 1 and 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())

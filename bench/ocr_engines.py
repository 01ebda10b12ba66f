"""`make bench-ocr`: the engine matrix and the worker's own overhead, in one run.

Pages: the text pages of the samples (`DOCUMENTS`, 200 DPI gray as the gateway renders them)
and a scanned-looking set made here from some of them (seeded: turned by 1-3 degrees either
way, grain and specks added). Ground truth: each page's own text layer.

Engine matrix, for every installed engine:
- CER and WER over all pages (edit distances after NFKC and whitespace normalisation, read in
  the worker's reading order), clean and scanned apart;
- seconds per page on one core: one process pinned to one core, one engine thread; process CPU
  time (children included, for the `tesseract` program) beside wall time, since the machine is
  shared and CPU time is far less sensitive to others' load. The timing is repeated on a few
  pages until two runs agree within 10% (their medians of CPU seconds per page);
- pages/s of one worker process holding 1 core (1 thread) and 2 cores (2 threads), for the
  engines that thread (onnxruntime's intra-op threads, Tesseract's OpenMP).
Engines run two at a time, one per core, so that the matrix fits in minutes.

Overhead, for one engine (the default): the real worker code (`OcrWorker`, the OCR process
pool, RabbitMQ: consume, base64 and PNG decode, OCR, confirmed publish, ack) against a bare
loop calling the same engine in the same pool layout on the same PNGs, in the same run; for
1 process with 2 threads, 2 processes with 1 thread, and a prefetch of one page more.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import multiprocessing
import os
import random
import resource
import statistics
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aio_pika
import numpy as np
import psutil
from PIL import Image, ImageFilter
from rapidfuzz.distance import Levenshtein

from bench.harness.common import SAMPLES
from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.core.settings import Settings
from ocr_gateway.messaging.amqp import declare_pages_queue, declare_queue
from ocr_gateway.messaging.contracts import encode_page_message
from ocr_gateway.rendering.mupdf import pymupdf
from ocr_gateway.worker.consumer import OcrWorker
from ocr_gateway.worker.engine import OcrEngine, build_engine
from ocr_gateway.worker.layout import OcrOutput
from ocr_gateway.worker.process import engine_name, ocr_pool, recognize_page, threads_per_process
from ocr_gateway.worker.tesseract import TESSERACT_PSM, TesserocrEngine

DOCUMENTS = ("pdflatex-4-pages.pdf", "multicolumn.pdf", "002-trivial-libre-office-writer.pdf")
MIN_TEXT_CHARS = 100
DPI = 200
SEED = 18
SCANNED_PAGES = 4  # of the clean pages, turned and noised
NOISE_SIGMA = 12.0
SPECKS = 0.0015  # share of pixels flipped to black or white
TIMING_PAGES = 2  # pages of each repeated timing run
AGREE_WITHIN = 0.10
MAX_TIMING_RUNS = 4
THREADING_ENGINES = ("rapidocr", "rapidocr3", "tesseract")  # tesserocr's libtesseract: 1 thread
OVERHEAD_PAGES = 8
OVERHEAD_PAIRS = 2
PSMS = (3, 4, 6, 11)
CALL_TIMEOUT_S = 600.0


@dataclass
class Page:
    name: str  # "<document> p<n>" or "... scanned"
    scanned: bool
    png: bytes
    reference: str


@dataclass
class PageRead:
    wall: float
    cpu: float
    text: str


@dataclass
class EngineResult:
    engine: str
    reads: list[PageRead] = field(default_factory=list)
    timing_runs: list[float] = field(default_factory=list)  # median CPU s/page of each run
    rate_1_core: float = 0.0
    rate_2_cores: float | None = None
    errors: dict[bool, tuple[int, ...]] = field(default_factory=dict)


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


# ---------------------------------------------------------------- pages


def render_pages() -> list[Page]:
    pages: list[Page] = []
    for name in DOCUMENTS:
        with pymupdf.open(SAMPLES / name) as document:
            for index, page in enumerate(document):
                text = page.get_text()
                if len(text.strip()) < MIN_TEXT_CHARS:
                    continue
                png = page.get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY).tobytes("png")
                pages.append(Page(f"{name} p{index + 1}", False, png, text))
    rng = random.Random(SEED)
    for page in rng.sample(pages, SCANNED_PAGES):
        pages.append(Page(f"{page.name} scanned", True, scanned(page.png, rng), page.reference))
    return pages


def scanned(png: bytes, rng: random.Random) -> bytes:
    """The page as a scanner might give it: turned 1-3 degrees, soft, grainy, with specks."""
    image = Image.open(io.BytesIO(png)).convert("L")
    angle = rng.uniform(1.0, 3.0) * rng.choice((-1, 1))
    image = image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    noise = np.random.default_rng(rng.randrange(2**32))
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + noise.normal(0.0, NOISE_SIGMA, pixels.shape)
    specks = noise.random(pixels.shape)
    pixels[specks < SPECKS / 2] = 0
    pixels[specks > 1 - SPECKS / 2] = 255
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        out, format="PNG", dpi=(DPI, DPI)
    )
    return out.getvalue()


# ---------------------------------------------------------------- inside a measuring process

_engine: OcrEngine | None = None


def _init_engine(name: str, threads: int, cores: list[int], psm: int | None = None) -> None:
    global _engine
    os.sched_setaffinity(0, cores)
    # With `psm`: the page segmentation sweep, on tesserocr.
    _engine = build_engine(name, threads) if psm is None else TesserocrEngine(threads, psm=psm)


def _read(png: bytes) -> PageRead:
    """One page: wall and CPU seconds (this process's and its waited-for children's)."""
    assert _engine is not None
    cpu = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    output = _engine.recognize(png)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu
    cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return PageRead(wall, cpu, output.text)


def _bare(png: bytes) -> int:
    """The bare loop's call: the engine on the page's PNG, nothing else."""
    assert _engine is not None
    return len(_engine.recognize(png).text)


def measuring_process(
    name: str, threads: int, cores: list[int], psm: int | None = None
) -> concurrent.futures.Executor:
    return concurrent.futures.ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_engine,
        initargs=(name, threads, cores, psm),
    )


@dataclass
class PsmResult:
    psm: int
    clean: tuple[int, ...]
    scanned: tuple[int, ...]
    cpu: float  # median CPU s/page


def psm_sweep(pages: list[Page], log: Callable[[str], None]) -> list[PsmResult]:
    """Tesseract's page segmentation modes on every page (tesserocr, one core each, two modes
    at a time): the one the Tesseract engines use is chosen from this."""

    def one(psm: int, core: int) -> PsmResult:
        with measuring_process("tesserocr", 1, [core], psm) as process:
            reads = [process.submit(_read, page.png).result() for page in pages]
        result = PsmResult(
            psm,
            errors(pages, reads, False),
            errors(pages, reads, True),
            statistics.median(r.cpu for r in reads),
        )
        log(
            f"psm {psm}: CER {cer(result.clean):.2%} clean, {cer(result.scanned):.2%} scanned;"
            f" CPU s/page {result.cpu:.2f}"
        )
        return result

    with concurrent.futures.ThreadPoolExecutor(2) as threads:
        return list(threads.map(one, PSMS, [0, 1] * (len(PSMS) // 2)))


# ---------------------------------------------------------------- the matrix


def errors(pages: list[Page], reads: list[PageRead], scanned_set: bool) -> tuple[int, ...]:
    char_errors = chars = word_errors = words = 0
    for page, read in zip(pages, reads, strict=True):
        if page.scanned != scanned_set:
            continue
        ref, hyp = normalise(page.reference), normalise(read.text)
        char_errors += Levenshtein.distance(ref, hyp)
        chars += len(ref)
        word_errors += Levenshtein.distance(ref.split(), hyp.split())
        words += len(ref.split())
    return char_errors, chars, word_errors, words


def measure_engine(
    name: str, core: int, pages: list[Page], log: Callable[[str], None]
) -> EngineResult:
    """Every page once on one core (accuracy, timing run 1), then timing runs on a few pages
    until two agree, then pages/s with 2 cores where the engine threads."""
    result = EngineResult(name)
    with measuring_process(name, 1, [core]) as one:
        started = time.perf_counter()
        result.reads = [one.submit(_read, page.png).result() for page in pages]
        result.rate_1_core = len(pages) / (time.perf_counter() - started)
        for scanned_set in (False, True):
            result.errors[scanned_set] = errors(pages, result.reads, scanned_set)
        timing = [page.png for page in pages[:TIMING_PAGES]]
        result.timing_runs.append(statistics.median(r.cpu for r in result.reads[:TIMING_PAGES]))
        while len(result.timing_runs) < MAX_TIMING_RUNS and not agree(result.timing_runs):
            reads = [one.submit(_read, png).result() for png in timing]
            result.timing_runs.append(statistics.median(r.cpu for r in reads))
    log(
        f"{name}: CER {cer(result.errors[False]):.2%} clean, {cer(result.errors[True]):.2%} "
        f"scanned; CPU s/page {statistics.median(r.cpu for r in result.reads):.2f}; "
        f"timing runs {', '.join(f'{t:.2f}' for t in result.timing_runs)}"
    )
    return result


def measure_two_cores(result: EngineResult, pages: list[Page]) -> None:
    if result.engine not in THREADING_ENGINES:
        return
    timing = [page.png for page in pages[:TIMING_PAGES]]
    with measuring_process(result.engine, 2, [0, 1]) as two:
        started = time.perf_counter()
        for png in timing:
            two.submit(_read, png).result()
        result.rate_2_cores = len(timing) / (time.perf_counter() - started)


def agree(runs: list[float]) -> bool:
    """The last two runs' medians within AGREE_WITHIN of each other."""
    return len(runs) >= 2 and abs(runs[-1] - runs[-2]) <= AGREE_WITHIN * max(runs[-2:])


def cer(counts: tuple[int, ...]) -> float:
    return counts[0] / max(1, counts[1])


def wer(counts: tuple[int, ...]) -> float:
    return counts[2] / max(1, counts[3])


def engine_matrix(
    engines: list[str], pages: list[Page], log: Callable[[str], None]
) -> list[EngineResult]:
    """Two engines at a time, one per core: the slowest engine alone on core 0."""
    by_cost = sorted(engines, key=lambda e: ("tess" in e, e))  # RapidOCR engines first
    lanes: list[list[str]] = [[by_cost[0]], by_cost[1:]] if len(by_cost) > 1 else [by_cost]
    results: dict[str, EngineResult] = {}

    def lane(core: int, names: list[str]) -> None:
        for name in names:
            results[name] = measure_engine(name, core, pages, log)

    with concurrent.futures.ThreadPoolExecutor(len(lanes)) as threads:
        list(threads.map(lane, range(len(lanes)), lanes))
    for name in engines:
        measure_two_cores(results[name], pages)
        log(
            f"{name}: pages/s 1 core {results[name].rate_1_core:.3f},"
            f" 2 cores {results[name].rate_2_cores}"
        )
    return [results[name] for name in engines]


# ---------------------------------------------------------------- the worker's overhead


@dataclass
class OverheadRun:
    layout: str
    processes: int
    prefetch: int
    bare_rate: float
    worker_rate: float
    bare_cpu: float  # CPU seconds per page: the OCR processes' and this process's
    worker_cpu: float

    @property
    def ratio(self) -> float:
        return self.worker_rate / self.bare_rate

    @property
    def cpu_ratio(self) -> float:
        return self.bare_cpu / self.worker_cpu


def pool_cpu(pool: ProcessPool) -> float:
    """CPU seconds used so far by the pool's processes (and their waited-for children) and by
    this process, which runs the worker's event loop."""
    executor = getattr(pool, "_executor", None)
    processes = getattr(executor, "_processes", None) or {}
    total = time.process_time()
    for pid in list(processes):
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


async def bare_rate(engine: str, processes: int, pngs: list[bytes]) -> tuple[float, float]:
    """Pages/s and CPU s/page of the engine alone in the worker's pool layout (the same
    processes and threads), called on the same PNGs, nothing else."""
    pool = ProcessPool(
        "bare",
        processes,
        initializer=_init_engine,
        initargs=(engine, threads_per_process(processes), [0, 1]),
    )
    try:
        await pool.start(timeout=CALL_TIMEOUT_S)
        cpu = pool_cpu(pool)
        started = time.perf_counter()
        await asyncio.gather(*(pool.run(_bare, png, timeout=CALL_TIMEOUT_S) for png in pngs))
        seconds = time.perf_counter() - started
        return len(pngs) / seconds, (pool_cpu(pool) - cpu) / len(pngs)
    finally:
        pool.shutdown()


async def worker_rate(
    base: Settings, engine: str, processes: int, prefetch: int, pngs: list[bytes]
) -> tuple[float, float]:
    """Pages/s and CPU s/page of the worker's own code: the pages wait in a queue; the worker
    consumes, decodes, OCRs, publishes each result confirmed and acks, until all are acked."""
    run = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "pages_queue": f"ocr.pages.bench-{run}",
            "results_queue": f"ocr.results.bench-{run}",
        }
    )
    connection = await aio_pika.connect_robust(settings.rabbitmq_url.get_secret_value())
    pool = ocr_pool(engine, processes)
    try:
        channel = await connection.channel(publisher_confirms=True)
        pages_queue = (await declare_pages_queue(channel, settings.pages_queue)).queue
        results = await declare_queue(channel, settings.results_queue)
        for number, png in enumerate(pngs, 1):
            body = encode_page_message(uuid.uuid4(), number, png)
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=settings.pages_queue,
            )
        await pool.start(engine_name, CALL_TIMEOUT_S)

        async def recognize(image_base64: str, tables: bool = False) -> OcrOutput:
            return await pool.run(recognize_page, image_base64, tables, timeout=CALL_TIMEOUT_S)

        worker = OcrWorker(settings, recognize, prefetch=prefetch)
        stop, abandon = asyncio.Event(), asyncio.Event()
        cpu = pool_cpu(pool)
        started = time.perf_counter()
        running = asyncio.create_task(worker.run(stop, abandon))
        while worker.results < len(pngs):
            if running.done():
                running.result()
                raise RuntimeError("the worker stopped early")
            await asyncio.sleep(0.01)
        seconds = time.perf_counter() - started
        used = pool_cpu(pool) - cpu
        stop.set()
        await running
        await results.delete(if_unused=False, if_empty=False)
        await pages_queue.delete(if_unused=False, if_empty=False)
        for name in (settings.pages_queue, settings.results_queue):
            with contextlib.suppress(Exception):
                await channel.queue_delete(f"{name}.dead")
        return len(pngs) / seconds, used / len(pngs)
    finally:
        pool.shutdown()
        await connection.close()


def decode_seconds(pngs: list[bytes]) -> float:
    """Median seconds to decode one page as the worker does: base64, then the whole PNG."""
    times = []
    for png in pngs:
        text = base64.b64encode(png).decode()
        started = time.perf_counter()
        Image.open(io.BytesIO(base64.b64decode(text, validate=True))).load()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def overhead(
    base: Settings, engine: str, pages: list[Page], log: Callable[[str], None]
) -> list[OverheadRun]:
    """Bare and worker runs alternate, OVERHEAD_PAIRS times per layout, so that others' load
    on this shared machine falls on both alike."""
    pngs = [page.png for page in pages][:OVERHEAD_PAGES]
    runs: list[OverheadRun] = []
    layouts = [(2, 2), (2, 3)] if engine not in THREADING_ENGINES else [(1, 1), (2, 2), (2, 3)]
    for processes, prefetch in layouts:
        threads = threads_per_process(processes)
        label = f"{processes} process{'es' if processes > 1 else ''} x {threads} thread"
        for _ in range(OVERHEAD_PAIRS):
            bare, bare_cpu = await bare_rate(engine, processes, pngs)
            through, worker_cpu = await worker_rate(base, engine, processes, prefetch, pngs)
            run = OverheadRun(label, processes, prefetch, bare, through, bare_cpu, worker_cpu)
            runs.append(run)
            log(
                f"overhead {engine} {label} prefetch {prefetch}: bare {bare:.3f} p/s"
                f" {bare_cpu:.2f} CPU s/page, worker {through:.3f} p/s {worker_cpu:.2f} CPU"
                f" s/page: ratio {run.ratio:.3f}, CPU ratio {run.cpu_ratio:.3f}"
            )
    return runs


# ---------------------------------------------------------------- the report


def report(
    results: list[EngineResult],
    psms: list[PsmResult],
    runs: list[OverheadRun],
    overhead_engine: str,
    pages: list[Page],
    decode_s: float,
    header: list[str],
) -> str:
    clean = sum(not page.scanned for page in pages)
    lines = [
        *header,
        "",
        "## Engine matrix",
        "",
        f"Pages: {clean} text pages of {', '.join(DOCUMENTS)} (200 DPI gray) and "
        f"{len(pages) - clean} scanned-looking copies of some of them (seed {SEED}: turned "
        f"1-3 degrees, blurred, grain sigma {NOISE_SIGMA:.0f}, specks). Ground truth: each "
        "page's text layer; CER and WER are edit distances over the reference after NFKC and "
        "whitespace normalisation, in the worker's reading order. Seconds per page: one "
        "process pinned to one core, one engine thread; CPU is the process's CPU time plus "
        "its children's (the `tesseract` program), wall is elapsed time. Two engines ran at a "
        "time, one per core.",
        "",
        "| engine | CER clean | WER clean | CER scanned | WER scanned | CPU s/page (median) "
        "| wall s/page (median) | timing runs: median CPU s/page on "
        f"{TIMING_PAGES} pages | pages/s, 1 process, 1 core | pages/s, 1 process, 2 cores "
        "| (1 - CER clean) per CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        cpu = statistics.median(read.cpu for read in r.reads)
        wall = statistics.median(read.wall for read in r.reads)
        agreed = "agreed" if agree(r.timing_runs) else "did not agree"
        two = f"{r.rate_2_cores:.3f}" if r.rate_2_cores is not None else "one thread only"
        lines.append(
            f"| {r.engine} | {cer(r.errors[False]):.2%} | {wer(r.errors[False]):.2%} "
            f"| {cer(r.errors[True]):.2%} | {wer(r.errors[True]):.2%} | {cpu:.2f} | {wall:.2f} "
            f"| {', '.join(f'{t:.2f}' for t in r.timing_runs)} ({len(r.timing_runs)} runs, "
            f"{agreed}) | {r.rate_1_core:.3f} | {two} | {(1 - cer(r.errors[False])) / cpu:.3f} |"
        )
    lines += [
        "",
        "CER per page:",
        "",
        "| page | " + " | ".join(r.engine for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for index, page in enumerate(pages):
        cells = []
        for r in results:
            ref, hyp = normalise(page.reference), normalise(r.reads[index].text)
            cells.append(f"{Levenshtein.distance(ref, hyp) / max(1, len(ref)):.2%}")
        lines.append(f"| {page.name} | " + " | ".join(cells) + " |")
    if psms:
        lines += [
            "",
            "Tesseract's page segmentation modes (tesserocr, `--oem 1`, every page, one core "
            f"each; the engines use {TESSERACT_PSM}):",
            "",
            "| psm | CER clean | WER clean | CER scanned | WER scanned | CPU s/page (median) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for sweep in psms:
            lines.append(
                f"| {sweep.psm} | {cer(sweep.clean):.2%} | {wer(sweep.clean):.2%} "
                f"| {cer(sweep.scanned):.2%} | {wer(sweep.scanned):.2%} | {sweep.cpu:.2f} |"
            )
    lines += [
        "",
        "## The worker's overhead",
        "",
        f"Engine {overhead_engine}, {min(OVERHEAD_PAGES, len(pages))} pages; bare and worker runs "
        f"alternate, {OVERHEAD_PAIRS} pairs per layout. Bare: the engine in the worker's process "
        "pool layout (threads = cores / processes), called on the PNGs directly. Worker: the "
        "pages in a "
        "RabbitMQ queue, the worker's own code (`OcrWorker` and its OCR pool) consumes each, "
        "decodes base64 and PNG, OCRs, publishes the result with a confirm and acks; timed "
        "from the start of consuming to the last ack, engines already loaded. CPU: the OCR "
        "processes' and the event loop's process's CPU seconds over the same span, per page. "
        "Decoding one "
        f"page (base64, then PNG) takes {decode_s * 1000:.1f} ms (median).",
        "",
        "| layout | prefetch | bare pages/s | worker pages/s | worker / bare (rate) "
        "| bare CPU s/page | worker CPU s/page | bare / worker (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.layout} | {run.prefetch} | {run.bare_rate:.3f} | {run.worker_rate:.3f} "
            f"| {run.ratio:.3f} | {run.bare_cpu:.2f} | {run.worker_cpu:.2f} "
            f"| {run.cpu_ratio:.3f} |"
        )
    lines.append("")
    return "\n".join(lines)

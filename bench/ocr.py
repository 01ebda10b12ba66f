"""`make bench-ocr`: OCR quality and speed through the real queue path.

For each installed engine, each DPI and each colour mode, the text pages of the samples are
uploaded to the gateway (in-process, on a throw-away database and unique queues), rendered,
started, OCR'd by one real worker subprocess (`python -m ocr_gateway.worker`) and stored; the
stored text is then compared with each page's own text layer (`page.get_text()`).

- CER: character edit distance / reference length, after NFKC (ligatures) and collapsing all
  whitespace to single spaces; summed over pages, so long pages weigh more.
- WER: the same on words.
- pages/s per OCR process: pages / (time from start to the last stored result) / processes.

Writes a Markdown table to bench/RESULTS-ocr.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pymupdf
from rapidfuzz.distance import Levenshtein

from ocr_gateway.app import create_app
from ocr_gateway.core.settings import Settings, get_settings
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.messaging.amqp import dead_letter_queue
from ocr_gateway.worker.engine import available_engines

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "data"
DOCUMENTS = ("pdflatex-4-pages.pdf", "multicolumn.pdf", "002-trivial-libre-office-writer.pdf")
MIN_TEXT_CHARS = 100  # a page with less text layer than this is not a text page
OUT = ROOT / "bench" / "RESULTS-ocr.md"
LOAD_SAMPLE_S = 5.0


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class PageScore:
    document: str
    page_number: int
    char_errors: int
    chars: int
    word_errors: int
    words: int


@dataclass
class RunResult:
    engine: str
    dpi: int
    grayscale: bool
    processes: int
    pages: int = 0
    seconds: float = 0.0
    render_seconds: float = 0.0
    png_bytes: int = 0
    ocr_seconds: list[float] = field(default_factory=list)
    scores: list[PageScore] = field(default_factory=list)
    failed: int = 0

    @property
    def cer(self) -> float:
        return sum(s.char_errors for s in self.scores) / max(1, sum(s.chars for s in self.scores))

    @property
    def wer(self) -> float:
        return sum(s.word_errors for s in self.scores) / max(1, sum(s.words for s in self.scores))

    def document_cer(self, document: str) -> float:
        scores = [s for s in self.scores if s.document == document]
        return sum(s.char_errors for s in scores) / max(1, sum(s.chars for s in scores))

    @property
    def pages_per_s_per_process(self) -> float:
        return self.pages / self.seconds / self.processes if self.seconds else 0.0


def score(document: str, page_number: int, reference: str, hypothesis: str) -> PageScore:
    ref, hyp = normalise(reference), normalise(hypothesis)
    return PageScore(
        document,
        page_number,
        Levenshtein.distance(ref, hyp),
        len(ref),
        Levenshtein.distance(ref.split(), hyp.split()),
        len(ref.split()),
    )


def text_pages(path: Path) -> dict[int, str]:
    """1-based page number → text layer, for the pages that have text to compare with."""
    with pymupdf.open(path) as document:  # type: ignore[no-untyped-call]
        layers = {index + 1: page.get_text() for index, page in enumerate(document)}
    return {number: text for number, text in layers.items() if len(text.strip()) >= MIN_TEXT_CHARS}


# ---------------------------------------------------------------- one run


class Worker:
    """A worker subprocess whose log lines (stderr) are collected."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    async def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + "\n".join(self.lines[-20:]))
            await asyncio.sleep(0.05)

    def ocr_seconds(self) -> list[float]:
        return [
            float(line.split("seconds=")[1].split()[0])
            for line in self.lines
            if "ocr finished" in line
        ]


@contextlib.asynccontextmanager
async def worker(settings: Settings, engine: str, processes: int) -> AsyncIterator[Worker]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCR_GATEWAY_")}
    env.update(
        {
            "OCR_GATEWAY_RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
            "OCR_GATEWAY_PAGES_QUEUE": settings.pages_queue,
            "OCR_GATEWAY_RESULTS_QUEUE": settings.results_queue,
            "OCR_GATEWAY_LOGS_DIR": str(settings.logs_dir),
            "OCR_GATEWAY_OCR_ENGINE": engine,
            "OCR_GATEWAY_OCR_PROCESSES": str(processes),
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocr_gateway.worker",
        env=env,
        cwd=settings.logs_dir.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    running = Worker(process)
    try:
        await running.wait_for("worker consuming")
        yield running
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await running.reader


async def poll(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/admin/job/{job_id}")
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def wait_jobs(
    client: httpx.AsyncClient, job_ids: list[str], done: str, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [await poll(client, job_id) for job_id in job_ids]
        if done == "rendered":
            finished = all(j["rendered_pages"] == j["total_page_number"] for j in jobs)
        else:
            finished = all(j["status"] in ("completed", "failed") for j in jobs)
        if finished:
            return jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not {done} within {timeout:.0f}s")
        await asyncio.sleep(0.1)


async def run_once(
    base: Settings, *, engine: str, dpi: int, grayscale: bool, processes: int
) -> RunResult:
    settings = base.model_copy(update={"render_dpi": dpi, "render_grayscale": grayscale})
    result = RunResult(engine, dpi, grayscale, processes)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway/api/v1", timeout=60
        ) as client:
            uploaded: dict[str, Path] = {}
            started_upload = time.monotonic()
            for name in DOCUMENTS:
                path = SAMPLES / name
                response = await client.post(
                    "/ocrpdf", files={"file": (name, await asyncio.to_thread(path.read_bytes))}
                )
                response.raise_for_status()
                uploaded[response.json()["job_id"]] = path
            job_ids = list(uploaded)
            async with worker(settings, engine, processes) as running:
                rendered = await wait_jobs(client, job_ids, "rendered", 300)
                result.render_seconds = time.monotonic() - started_upload
                started = time.monotonic()
                for job_id in job_ids:
                    (await client.post(f"/admin/start/{job_id}")).raise_for_status()
                jobs = await wait_jobs(client, job_ids, "settled", 3600)
                result.seconds = time.monotonic() - started
            result.ocr_seconds = running.ocr_seconds()
    for job in jobs:
        path = uploaded[job["job_id"]]
        references = await asyncio.to_thread(text_pages, path)
        result.pages += len(job["pages"])
        for page in job["pages"]:
            if page["status"] != "done":
                result.failed += 1
            if page["page_number"] in references:
                result.scores.append(
                    score(
                        path.name,
                        page["page_number"],
                        references[page["page_number"]],
                        page["text"] or "",
                    )
                )
    paths = [Path(page["path"]) for job in rendered for page in job["pages"]]
    result.png_bytes = await asyncio.to_thread(lambda: sum(p.stat().st_size for p in paths))
    return result


# ---------------------------------------------------------------- the report


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for package in ("pymupdf", "rapidocr-onnxruntime", "onnxruntime", "pytesseract"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{package} {importlib.metadata.version(package)}")
    if shutil.which("tesseract"):
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout
        parts.append(out.splitlines()[0] if out else "tesseract")
    return ", ".join(parts)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


class LoadSampler:
    """The 1-minute load average, sampled through the run: speeds mean little on a busy box."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            await asyncio.sleep(LOAD_SAMPLE_S)

    def summary(self) -> str:
        if not self.samples:
            return "not sampled"
        return (
            f"median {statistics.median(self.samples):.1f}, peak {max(self.samples):.1f} "
            f"on {os.cpu_count()} cores"
        )


def report(results: list[RunResult], load: str, seconds: float) -> str:
    lines = [
        "# OCR quality and speed (`make bench-ocr`)",
        "",
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores ({cpu_model()}); "
        f"{versions()}.",
        f"Load average during the run: {load} (other work shares this machine, so speeds are "
        f"indicative); the whole run took {seconds / 60:.0f} min.",
        "",
        f"Pages: the text pages of {', '.join(DOCUMENTS)} (a text layer of at least "
        f"{MIN_TEXT_CHARS} characters; {len(results[0].scores) if results else 0} pages), "
        "through the real path: upload → render → start → pages queue → one worker → results "
        "queue → PostgreSQL. Ground truth is each page's own text layer. CER and WER are edit "
        "distances over the reference length after NFKC and whitespace normalisation. Reading "
        "order counts: a column read in the wrong place costs its whole length twice.",
        "",
        "| engine | DPI | colour | pages | failed | CER | WER | pages/s per OCR process "
        "| OCR s/page (median, mean) | PNG KB/page |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        median = statistics.median(r.ocr_seconds) if r.ocr_seconds else 0.0
        mean = statistics.fmean(r.ocr_seconds) if r.ocr_seconds else 0.0
        lines.append(
            f"| {r.engine} | {r.dpi} | {'gray' if r.grayscale else 'RGB'} | {r.pages} "
            f"| {r.failed} | {r.cer:.2%} | {r.wer:.2%} | {r.pages_per_s_per_process:.3f} "
            f"| {median:.1f}, {mean:.1f} | {r.png_bytes / max(1, r.pages) / 1024:.0f} |"
        )
    lines += [
        "",
        "CER per document:",
        "",
        "| engine | DPI | colour | " + " | ".join(DOCUMENTS) + " |",
        "|---|---:|---|" + "---:|" * len(DOCUMENTS),
    ]
    for r in results:
        cells = " | ".join(f"{r.document_cer(name):.2%}" for name in DOCUMENTS)
        lines.append(f"| {r.engine} | {r.dpi} | {'gray' if r.grayscale else 'RGB'} | {cells} |")
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


async def delete_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        for name in (settings.pages_queue, settings.results_queue):
            for queue in (name, dead_letter_queue(name)):
                await channel.queue_delete(queue)


async def main(args: argparse.Namespace) -> None:
    configured = get_settings()
    run_id = uuid.uuid4().hex[:8]
    engines = args.engine or available_engines()
    if not engines:
        raise SystemExit("no OCR engine installed: pip install -e '.[ocr]'")
    dpis = args.dpi or sorted({configured.render_dpi, 150, 200, 300})
    colours = [True, False] if args.colour == "both" else [args.colour == "gray"]
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        base = Settings(
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/ocr_gateway_bench_{run_id}",
            rabbitmq_url=configured.rabbitmq_url,
            pages_queue=f"ocr.pages.bench-{run_id}",
            results_queue=f"ocr.results.bench-{run_id}",
            files_dir=Path(tmp) / "files",
            temp_dir=Path(tmp) / "temp",
            logs_dir=Path(tmp) / "logs",
            log_level="WARNING",
            render_workers=2,
            dispatch_poll_s=0.2,
            _env_file=None,
        )
        await ensure_database(base)
        await asyncio.to_thread(upgrade, base)
        results: list[RunResult] = []
        sampler = LoadSampler()
        sampling = asyncio.create_task(sampler.run())
        began = time.monotonic()
        try:
            for engine in engines:
                for dpi in dpis:
                    for grayscale in colours:
                        result = await run_once(
                            base,
                            engine=engine,
                            dpi=dpi,
                            grayscale=grayscale,
                            processes=args.processes,
                        )
                        results.append(result)
                        print(
                            f"{engine:10} {dpi:4} {'gray' if grayscale else 'RGB ':4} "
                            f"pages={result.pages} CER={result.cer:.2%} WER={result.wer:.2%} "
                            f"pages/s/process={result.pages_per_s_per_process:.3f}",
                            flush=True,
                        )
        finally:
            sampling.cancel()
            await delete_queues(base)
            await drop_database(base)
    text = await asyncio.to_thread(report, results, sampler.summary(), time.monotonic() - began)
    await asyncio.to_thread(args.out.write_text, text)
    print(f"wrote {args.out}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", action="append", help="engine (default: all installed)")
    parser.add_argument(
        "--dpi", action="append", type=int, help="DPI (default: configured, 150, 200, 300)"
    )
    parser.add_argument("--colour", choices=("both", "gray", "rgb"), default="both")
    parser.add_argument("--processes", type=int, default=1, help="OCR processes in the worker")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

"""The OCR section (`make bench-ocr`): quality and speed of each engine through the real queue path.

For each installed engine, each DPI and each colour mode, the text pages of the samples are
uploaded to the gateway (in-process, on a throw-away database and unique queues), rendered,
started, OCR'd by one real worker subprocess (`python -m ocr_gateway.worker`, through the tests'
worker harness) and stored; the stored text is then compared with each page's own text layer
(`page.get_text()`).

- CER: character edit distance / reference length, after NFKC (ligatures) and collapsing all
  whitespace to single spaces; summed over pages, so long pages weigh more.
- WER: the same on words.
- pages/s per OCR process: pages / (time from start to the last stored result) / processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rapidfuzz.distance import Levenshtein
from tests.support.http import job_detail
from tests.support.waiting import wait_until
from tests.support.worker import worker_process

from bench.harness.common import SAMPLES
from bench.harness.report import machine
from ocr_gateway.app import create_app
from ocr_gateway.core.settings import Settings
from ocr_gateway.rendering.mupdf import pymupdf

DOCUMENTS = ("pdflatex-4-pages.pdf", "multicolumn.pdf", "002-trivial-libre-office-writer.pdf")
MIN_TEXT_CHARS = 100  # a page with less text layer than this is not a text page
LOAD_SAMPLE_S = 5.0
WORKER_START_TIMEOUT_S = 300  # an engine loads its models first
WORKER_STOP_GRACE_S = 60


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
    with pymupdf.open(path) as document:
        layers = {index + 1: page.get_text() for index, page in enumerate(document)}
    return {number: text for number, text in layers.items() if len(text.strip()) >= MIN_TEXT_CHARS}


# ---------------------------------------------------------------- one run


def ocr_seconds(lines: list[str]) -> list[float]:
    """The OCR time of each page, from the worker's `ocr finished ... seconds=<s>` log lines."""
    return [float(line.split("seconds=")[1].split()[0]) for line in lines if "ocr finished" in line]


async def wait_jobs(
    client: httpx.AsyncClient, job_ids: list[str], done: str, timeout: float
) -> list[dict[str, Any]]:
    """Poll the jobs until every one is rendered (`done="rendered"`) or settled; return them."""
    jobs: list[dict[str, Any]] = []

    async def finished() -> bool:
        nonlocal jobs
        jobs = [await job_detail(client, job_id) for job_id in job_ids]
        if done == "rendered":
            return all(j["rendered_pages"] == j["total_page_number"] for j in jobs)
        return all(j["status"] in ("completed", "failed") for j in jobs)

    await wait_until(finished, timeout, 0.1, what=f"jobs {done}")
    return jobs


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
            async with worker_process(
                settings,
                grace=WORKER_STOP_GRACE_S,
                start_timeout=WORKER_START_TIMEOUT_S,
                OCR_GATEWAY_OCR_ENGINE=engine,
                OCR_GATEWAY_OCR_PROCESSES=str(processes),
            ) as running:
                rendered = await wait_jobs(client, job_ids, "rendered", 300)
                result.render_seconds = time.monotonic() - started_upload
                started = time.monotonic()
                for job_id in job_ids:
                    (await client.post(f"/admin/start/{job_id}")).raise_for_status()
                jobs = await wait_jobs(client, job_ids, "settled", 3600)
                result.seconds = time.monotonic() - started
            result.ocr_seconds = ocr_seconds(running.lines)
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
    packages = ("pymupdf", "rapidocr-onnxruntime", "rapidocr", "onnxruntime", "pytesseract")
    for package in (*packages, "tesserocr"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{package} {importlib.metadata.version(package)}")
    if shutil.which("tesseract"):
        out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout
        parts.append(out.splitlines()[0] if out else "tesseract")
    return ", ".join(parts)


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
        f"Measured {dt.date.today().isoformat()} on {os.cpu_count()} cores ({machine()['CPU']}); "
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

"""13. Text layer first: the same PDFs end to end with `text_layer=auto` against OCR of every page.

The PDFs: every sample PDF that the gateway takes (tests/data: the 117-page GeoTopo book, the
pdflatex, LibreOffice and two-column pages, the rotated Arabic pages, and the image-only and
single-image PDFs); `--quick` takes three small ones. One service in automatic dispatch, one
reference OCR worker (`ocr-gateway worker`, RapidOCR, 2 OCR processes) beside it.

- Auto: each PDF uploaded with `text_layer=auto` (`dedup=false`, so each run does the work), timed
  from the first upload until every job is finished. Pages that pass the quality check are done
  at render time; the others go through the worker.
- OCR: the same PDFs with `text_layer=off`, every page through the worker, timed the same way.
- The ratio is pages/s end to end, auto / OCR; the detail says how many pages took each path.
- CER of the text-layer path against OCR: on the pages that took the text layer, the characters
  the OCR run's text of the same page would change (Levenshtein distance after NFKC and
  collapsing whitespace) over the text layer's characters: how far apart the two paths' texts
  are, the text layer taken as the reference.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein
from tests.support.waiting import wait_until

from bench.harness.common import SAMPLES, BenchError, log
from bench.harness.context import Context
from bench.harness.plan import Plan, Row, fmt_list, rotate
from bench.harness.service import OcrWorkerProcess, Service

SECTION = 13
OCR_PROCESSES = 2
FULL = (
    "GeoTopo-komprimiert.pdf",
    "pdflatex-4-pages.pdf",
    "multicolumn.pdf",
    "002-trivial-libre-office-writer.pdf",
    "habibi-rotated.pdf",
    "imagemagick-images.pdf",
    "cmyk-image.pdf",
    "grayscale-image.pdf",
)
QUICK = ("pdflatex-4-pages.pdf", "multicolumn.pdf", "imagemagick-images.pdf")
FINISH_TIMEOUT_S = 1800
# One pair: the OCR run reads every page of the samples (137), minutes on 2 cores.
FULL_RUNS = 1


def documents(plan: Plan) -> tuple[str, ...]:
    return QUICK if plan.quick else FULL


def text_layer_rows(plan: Plan) -> list[Row]:
    pdfs = ", ".join(documents(plan))
    return [
        Row(
            "13a",
            SECTION,
            "Text layer: pages/s end to end, auto / OCR",
            f"upload until every job is finished, text_layer=auto vs off, one worker with"
            f" {OCR_PROCESSES} OCR processes (RapidOCR), automatic dispatch; {pdfs}",
            "x",
            ">=",
            1.0,
        ),
        Row(
            "13b",
            SECTION,
            "Text layer: pages read from their text layer",
            "pages done at render time (source text_layer) of all pages; the rest OCR'd",
            "n",
        ),
        Row(
            "13c",
            SECTION,
            "Text layer: CER of the text-layer path against OCR, % (exact in the detail)",
            "Levenshtein (NFKC, whitespace collapsed) of the OCR run's text against the text"
            " layer's, on the pages that took the text layer",
            "n",
        ),
    ]


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


async def one_run(
    ctx: Context, svc: Service, files: list[tuple[str, bytes]], text_layer: str
) -> tuple[float, dict[tuple[str, int], tuple[str, str]]]:
    """Upload every file with `text_layer`; wait until every job is finished. Returns pages/s
    and each page's (source, text) by (filename, page number); the jobs are deleted after."""
    ids: list[uuid.UUID] = []
    pages = 0
    started = time.perf_counter()
    for name, data in files:
        body = await svc.call(
            "POST",
            "/ocrpdf",
            202,
            files={"file": (name, data)},
            params={"text_layer": text_layer, "dedup": "false"},
        )
        ids.append(uuid.UUID(body["job_id"]))
        pages += int(body["total_page_number"])

    async def finished() -> bool:
        done = await ctx.conn.fetchval(
            "SELECT count(*) FROM jobs WHERE job_id = ANY($1::uuid[])"
            " AND status IN ('completed', 'failed')",
            ids,
        )
        return bool(done == len(ids))

    ended = await wait_until(
        finished, timeout=FINISH_TIMEOUT_S, interval=0.05, what=f"text_layer={text_layer} jobs"
    )
    rate = pages / (ended - started)
    rows = await ctx.conn.fetch(
        "SELECT j.filename, p.page_number, p.source, p.status, coalesce(p.text, '') AS text"
        " FROM pages p JOIN jobs j USING (job_id) WHERE p.job_id = ANY($1::uuid[])",
        ids,
    )
    failed = [r for r in rows if r["status"] != "done"]
    if failed:
        log(f"text layer: {len(failed)} pages not done with text_layer={text_layer}")
    texts = {(r["filename"], r["page_number"]): (r["source"], r["text"]) for r in rows}
    for job_id in ids:
        await svc.call("DELETE", f"/jobs/{job_id}")
    return rate, texts


def compare(
    auto: dict[tuple[str, int], tuple[str, str]], ocr: dict[tuple[str, int], tuple[str, str]]
) -> tuple[int, int, float, dict[str, str]]:
    """Pages read from the text layer, all pages, the CER against OCR (%), and per document
    how many pages took the text layer (and their CER)."""
    read = [key for key, (source, _) in auto.items() if source == "text_layer"]
    errors: dict[str, int] = {}
    chars: dict[str, int] = {}
    for key in read:
        reference = normalise(auto[key][1])
        hypothesis = normalise(ocr.get(key, ("", ""))[1])
        errors[key[0]] = errors.get(key[0], 0) + Levenshtein.distance(reference, hypothesis)
        chars[key[0]] = chars.get(key[0], 0) + len(reference)
    by_document: dict[str, list[int]] = {}
    for (name, _), (source, _) in auto.items():
        counts = by_document.setdefault(name, [0, 0])
        counts[0] += source == "text_layer"
        counts[1] += 1
    paths = {}
    for name, (n, total) in sorted(by_document.items()):
        note = f", CER {100 * errors[name] / chars[name]:.1f}%" if chars.get(name) else ""
        paths[name] = f"{n}/{total}{note}"
    total_chars = sum(chars.values())
    cer = 100 * sum(errors.values()) / total_chars if total_chars else float("nan")
    return len(read), len(auto), cer, paths


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    plan = ctx.plan
    files: list[tuple[str, bytes]] = []
    for name in documents(plan):
        files.append((name, await asyncio.to_thread(Path(SAMPLES / name).read_bytes)))
    svc = Service(ctx, "text-layer", {"OCR_GATEWAY_DISPATCH_MODE": "auto"})
    worker = OcrWorkerProcess(ctx, "text-layer", OCR_PROCESSES)
    await svc.start()
    auto_rates: list[float] = []
    ocr_rates: list[float] = []
    results: dict[str, Any] = {}
    try:
        await worker.start()
        # A warm-up: the worker's OCR processes load their models on their first pages.
        await one_run(ctx, svc, files[-1:], "off")
        runs = 1 if plan.quick else FULL_RUNS
        for run_index in range(runs):
            for kind in rotate(["auto", "off"], run_index):
                rate, texts = await one_run(ctx, svc, files, kind)
                (auto_rates if kind == "auto" else ocr_rates).append(rate)
                results[kind] = texts
            log(
                f"text layer run {run_index + 1}/{runs}: auto {auto_rates[-1]:.2f},"
                f" OCR {ocr_rates[-1]:.2f} pages/s"
            )
    finally:
        await worker.stop()
        await svc.stop()
    if not results.get("auto") or not results.get("off"):
        raise BenchError("a text-layer run recorded no pages")
    read, total, cer, paths = compare(results["auto"], results["off"])
    rows["13a"].values = [a / o for a, o in zip(auto_rates, ocr_rates, strict=True)]
    rows["13a"].detail = (
        f"auto {fmt_list(auto_rates, 2)} pages/s; OCR {fmt_list(ocr_rates, 2)} pages/s;"
        f" {read} of {total} pages took the text layer, {total - read} OCR"
    )
    rows["13b"].values = [float(read)]
    rows["13b"].detail = "; ".join(f"{name} {n}" for name, n in paths.items())
    rows["13c"].values = [cer]
    rows["13c"].detail = f"CER {cer:.2f}% over {read} pages"

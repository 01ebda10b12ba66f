"""Exports: the results of a 1,000-page job as txt, json, pdf and zip.

The job is seeded straight into the database (its PNGs hard-linked to the sample's renders,
each page with ~40 fake lines of text and boxes), then fetched from the running service:
txt and json against their 1 s target, the pdf's build against a bare PyMuPDF loop doing the
same insertions in one process of the bench's own pool, and the API process's RSS before and
after every format.

    python -m bench.sections.exports           # this section alone (setup included)
    python -m bench.sections.exports --quick   # 50 pages
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import asyncio
import os
import time
import uuid
from typing import Any

import orjson
import psutil
import pymupdf

from bench.harness.common import MB, BenchError, log
from bench.harness.context import Context
from bench.harness.files import link_pages
from bench.harness.plan import Row, make_plan
from bench.harness.service import Service
from ocr_gateway.exports.builders import draw_text_layer
from ocr_gateway.exports.formats import POINTS_PER_INCH, page_entry, png_size

LINES_PER_PAGE = 40
WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"]


def export_pages(quick: bool) -> int:
    return 50 if quick else 1000


def export_rows(pages: int) -> dict[str, Row]:
    job = f"{pages:,}-page job, {LINES_PER_PAGE} lines a page"
    rows = [
        Row("9a", 9, f"Export txt, {job}", "GET /result?format=txt, whole body", "ms", "<", 1000),
        Row("9b", 9, f"Export json, {job}", "GET /result?format=json, whole body", "ms", "<", 1000),
        Row(
            "9c",
            9,
            "Export pdf build: service / bare",
            "pages/s, first GET ?format=pdf until its body is read, vs a bare PyMuPDF loop"
            " (page, image, invisible text per box, save) in one process",
            "x",
            ">=",
            0.85,
        ),
        Row("9d", 9, f"Export zip, {job}", "first GET ?format=zip until its body is read", "ms"),
        Row(
            "9e",
            9,
            "API process RSS: after every export - before",
            "psutil, the `ocr-gateway serve` process",
            "MB",
            "<",
            50,
        ),
    ]
    return {row.key: row for row in rows}


def fake_lines(number: int, width: int, height: int) -> list[dict[str, Any]]:
    """Lines of words down the page, in the page image's pixels."""
    step = height / (LINES_PER_PAGE + 2)
    lines = []
    for line in range(LINES_PER_PAGE):
        words = [WORDS[(number + line + i) % len(WORDS)] for i in range(8)]
        top = step * (line + 1)
        lines.append(
            {
                "bbox": [width * 0.1, top, width * 0.9, top + step * 0.8],
                "text": " ".join(words),
                "confidence": 0.9,
            }
        )
    return lines


def bare_pdf(pngs: list[str], boxes: list[list[dict[str, Any]]], dpi: int, target: str) -> int:
    """The limit: the same page, image and text insertions, one document, one save."""
    doc = pymupdf.open()
    scale = POINTS_PER_INCH / dpi
    for png, page_boxes in zip(pngs, boxes, strict=True):
        with open(png, "rb") as image:
            width, height = png_size(image.read(24))
        page = doc.new_page(width=width * scale, height=height * scale)
        page.insert_image(page.rect, filename=png)
        draw_text_layer(page, page_boxes, dpi)
    doc.save(target, garbage=0, deflate=True)
    doc.close()
    return os.path.getsize(target)


def page_rows(
    ctx: Context, job_id: uuid.UUID, pages: int
) -> tuple[list[tuple[Any, ...]], list[list[Any]]]:
    """The page rows to copy (PNGs linked into the job's folder), and each page's boxes."""
    records = link_pages(ctx.files_dir, ctx.renders, [(job_id, pages)])
    rows, client_boxes = [], []
    for job, number, path, _ in records:
        with open(path, "rb") as image:
            width, height = png_size(image.read(24))
        lines = fake_lines(number, width, height)
        text = "\n".join(line["text"] for line in lines)
        rows.append((job, number, path, "done", text, orjson.dumps(lines).decode()))
        client_boxes.append(page_entry(number, "done", text, lines)["boxes"])
    return rows, client_boxes


async def seed_finished_job(ctx: Context, pages: int) -> tuple[uuid.UUID, list[list[Any]]]:
    """A completed job of `pages` pages, each done with its fake lines; returns the client
    form of each page's boxes (what the pdf builder reads)."""
    job_id = uuid.uuid4()
    rows, client_boxes = await asyncio.to_thread(page_rows, ctx, job_id, pages)
    await ctx.conn.execute(
        "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number,"
        " rendered_pages, completed_pages, render_attempts)"
        " VALUES ($1, 'export.pdf', 'application/pdf', 'completed', $2, $2, $2, 1)",
        job_id,
        pages,
    )
    await ctx.conn.copy_records_to_table(
        "pages",
        records=rows,
        columns=["job_id", "page_number", "path", "status", "text", "boxes"],
    )
    return job_id, client_boxes


async def timed_get(svc: Service, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    async with svc.http.stream("GET", path, timeout=900) as response:
        if response.status_code != 200:
            raise BenchError(f"GET {path}: {response.status_code} {await response.aread()!r}")
        async for chunk in response.aiter_bytes():
            size += len(chunk)
    return time.perf_counter() - started, size


async def run(ctx: Context, svc: Service, rows: dict[str, Row]) -> None:
    pages = export_pages(ctx.plan.quick)
    await svc.clear()
    job_id, client_boxes = await seed_finished_job(ctx, pages)
    api = psutil.Process(svc.pid)
    result = f"/jobs/{job_id}/result?format="
    await timed_get(svc, f"/jobs/{job_id}")  # a warm connection
    rss_before = api.memory_info().rss / MB
    txt_s, txt_size = await timed_get(svc, result + "txt")
    json_s, json_size = await timed_get(svc, result + "json")
    pdf_s, pdf_size = await timed_get(svc, result + "pdf")
    again_s, _ = await timed_get(svc, result + "pdf")
    zip_s, zip_size = await timed_get(svc, result + "zip")
    rss_after = api.memory_info().rss / MB

    assert ctx.pool is not None
    job_dir = ctx.files_dir / str(job_id)
    pngs = [str(job_dir / f"{n}.png") for n in range(1, pages + 1)]
    bare_target = str(ctx.work / "bare-export.pdf")
    started = time.perf_counter()
    bare_size = await ctx.pool.run(
        bare_pdf, pngs, client_boxes, ctx.dpi, bare_target, timeout=60 + pages
    )
    bare_s = time.perf_counter() - started

    rows["9a"].values = [txt_s * 1000]
    rows["9a"].detail = f"{txt_size / MB:.1f} MB"
    rows["9b"].values = [json_s * 1000]
    rows["9b"].detail = f"{json_size / MB:.1f} MB"
    rows["9c"].values = [bare_s / pdf_s]
    rows["9c"].detail = (
        f"service {pages / pdf_s:.1f} pages/s ({pdf_s:.1f} s, {pdf_size / MB:.0f} MB), bare"
        f" {pages / bare_s:.1f} pages/s ({bare_s:.1f} s, {bare_size / MB:.0f} MB); the built file"
        f" served again in {again_s * 1000:.0f} ms"
    )
    rows["9d"].values = [zip_s * 1000]
    rows["9d"].detail = f"{zip_size / MB:.0f} MB"
    rows["9e"].values = [rss_after - rss_before]
    rows["9e"].detail = f"{rss_before:.0f} MB before, {rss_after:.0f} MB after"
    log(
        f"exports: txt {txt_s * 1000:.0f} ms, json {json_s * 1000:.0f} ms, pdf {pdf_s:.1f} s vs"
        f" bare {bare_s:.1f} s, zip {zip_s:.1f} s, API RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )


async def main_async(quick: bool) -> int:
    ctx = Context(make_plan(quick, None), keep=False)
    rows = export_rows(export_pages(quick))
    try:
        await ctx.setup()
        svc = Service(ctx, "exports", {})
        await svc.start()
        try:
            await run(ctx, svc, rows)
        finally:
            await svc.stop()
    finally:
        await ctx.cleanup()
    for row in rows.values():
        print(
            f"{row.key}  {row.measure}: {row.fmt(row.median)} ({row.target_text}, {row.met_text})"
        )
        print(f"      {row.detail}")
    return 0 if all(row.met is not False for row in rows.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 pages instead of 1,000")
    args = parser.parse_args(argv)
    return asyncio.run(main_async(args.quick))


if __name__ == "__main__":
    sys.exit(main())

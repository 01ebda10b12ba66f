"""`POST /convert/batch` and `GET /download/{file_id}` through the real app, database, inspect
and render pools and broker: a batch of images and PDFs is one job of every page in order, a
refused file keeps nothing, a done job lists its workbook, which downloads as XLSX and reads
back with openpyxl, and another tenant's file is not found."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import math
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pymupdf
import pytest
from aio_pika.abc import AbstractChannel
from openpyxl import load_workbook
from PIL import Image
from sqlalchemy import select

from ocr_gateway.components import Components
from ocr_gateway.db.models import Download, Job
from tests.integration.test_bad_input import count_rows, stored_paths, truncated_pdf
from tests.support.documents import blank_pdf, sample
from tests.support.gateway import drain, isolated_gateway
from tests.support.http import wait_for_job, wait_rendered
from tests.support.results import done, send_result
from tests.support.stored import job_names
from tests.support.tables import TABLES, draw_table_png, ruled_pages, table_pdf
from tests.support.waiting import wait_until
from tests.support.worker import LogLineMissing, worker_process

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FileParts = list[tuple[str, tuple[str, bytes]]]


def page_side(points: float, dpi: int) -> int:
    """A side of a PDF page rendered at `dpi`, in pixels, rounded up as MuPDF does."""
    return math.ceil(points * dpi / 72 - 0.001)


def batch(*files: tuple[str, bytes]) -> FileParts:
    return [("files", file) for file in files]


async def convert(
    client: httpx.AsyncClient,
    files: FileParts,
    *,
    status: int = 202,
    headers: dict[str, str] | None = None,
    **params: str,
) -> dict[str, Any]:
    response = await client.post("/convert/batch", files=files, params=params, headers=headers)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def table(*rows: list[tuple[str, int, int]]) -> dict[str, Any]:
    return {
        "bbox": [0, 0, 16, 16],
        "rows": [
            [{"text": text, "row_span": down, "col_span": across} for text, down, across in row]
            for row in rows
        ],
    }


async def file_id_of(services: Components, job_id: str) -> uuid.UUID:
    async with services.sessions() as session:
        found = await session.scalar(
            select(Download.file_id).where(Download.job_id == uuid.UUID(job_id))
        )
    assert found is not None
    return found


async def finish(
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    job_id: str,
    results: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Post a worker's results for the job's pages; return the job once completed."""
    for result in results:
        await send_result(channel, services.settings.results_queue, result)
    latest: dict[str, Any] = {}

    async def completed() -> bool:
        nonlocal latest
        latest = (await client.get(f"/jobs/{job_id}", headers=headers)).json()
        return bool(latest["status"] == "completed")

    await wait_until(completed, what=f"job {job_id} completed")
    return latest


async def test_a_batch_of_images_and_pdfs_is_one_job_of_every_page_in_order(
    client: httpx.AsyncClient, services: Components
) -> None:
    files = batch(
        ("smile.png", sample("smile.png").read_bytes()),
        ("paper.pdf", sample("pdflatex-4-pages.pdf").read_bytes()),
        ("photo.jpg", sample("image.jpg").read_bytes()),
        ("smile.tiff", sample("smile.tiff").read_bytes()),
    )
    body = await convert(client, files, text_layer="off")
    assert body["status"] == "pending" and body["deduplicated"] is False
    assert body["files"] == [
        {"index": 0, "filename": "smile.png", "total_page_number": 1},
        {"index": 1, "filename": "paper.pdf", "total_page_number": 4},
        {"index": 2, "filename": "photo.jpg", "total_page_number": 1},
        {"index": 3, "filename": "smile.tiff", "total_page_number": 1},
    ]
    job_id = body["job_id"]
    rendered = await wait_rendered(client, job_id)
    assert (rendered["total_page_number"], rendered["rendered_pages"]) == (7, 7)
    shown = (await client.get(f"/jobs/{job_id}")).json()
    assert shown["downloads"] == [] and shown["status"] == "pending"
    async with services.sessions() as session:
        job = await session.get(Job, uuid.UUID(job_id))
    assert job is not None and job.extract_tables and job.media_type == "application/pdf"
    assert job.source_files == body["files"]

    async def size_of(page: int) -> tuple[int, int]:
        image = await client.get(f"/jobs/{job_id}/pages/{page}/image")
        assert image.status_code == 200
        with Image.open(io.BytesIO(image.content)) as png:
            return png.size

    # An image's page is rendered at its own pixels; a PDF page at the render DPI.
    assert await size_of(1) == (16, 16)
    assert await size_of(6) == Image.open(sample("image.jpg")).size
    assert await size_of(7) == (16, 16)
    with pymupdf.open(sample("pdflatex-4-pages.pdf")) as paper:
        box = paper[0].rect
    dpi = services.settings.render_dpi
    assert await size_of(2) == (page_side(box.width, dpi), page_side(box.height, dpi))
    # The parts and the merged upload are gone once rendered.
    assert not [p for p in services.settings.temp_dir.iterdir() if p.name.startswith(job_id)]


async def test_a_refused_file_is_named_by_its_index_and_nothing_is_kept(
    client: httpx.AsyncClient, services: Components
) -> None:
    before = stored_paths(services)
    refusals = [
        (batch(("ok.png", sample("smile.png").read_bytes()), ("cut.pdf", truncated_pdf())), 422, 1),
        (batch(("ok.pdf", blank_pdf(1)), ("notes.pdf", b"plain text, not a PDF\n" * 40)), 415, 1),
        (batch(("empty.png", b""), ("ok.pdf", blank_pdf(1))), 400, 0),
    ]
    for files, status, index in refusals:
        response = await client.post("/convert/batch", files=files)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["index"] == index and body["detail"], body
    refused = await client.post(
        "/convert/batch", files=batch(("ok.pdf", blank_pdf(1))), params={"text_layer": "sometimes"}
    )
    assert refused.status_code == 422 and "text_layer" in refused.json()["detail"]
    assert await count_rows(services, "jobs") == 0
    assert await count_rows(services, "downloads") == 0
    assert stored_paths(services) - before == set(), "a refused batch left files behind"


async def test_too_many_pages_in_all_is_refused_for_the_batch(
    client: httpx.AsyncClient, services: Components
) -> None:
    before = stored_paths(services)
    limit = services.settings.max_pages
    files = batch(("a.pdf", blank_pdf(limit // 2 + 1)), ("b.pdf", blank_pdf(limit // 2 + 1)))
    response = await client.post("/convert/batch", files=files)
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["error"] == "too_many_pages" and "index" not in body, body
    assert await count_rows(services, "jobs") == 0
    assert stored_paths(services) - before == set(), "a refused batch left files behind"


async def test_a_done_job_lists_its_workbook_which_downloads_as_xlsx(
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = batch(
        ("smile.png", sample("smile.png").read_bytes()),
        ("report.pdf", blank_pdf(2)),
    )
    body = await convert(client, files, text_layer="off")
    job_id = body["job_id"]
    await wait_rendered(client, job_id)
    file_id = await file_id_of(services, job_id)
    early = await client.get(f"/download/{file_id}")
    assert early.status_code == 409 and early.json()["status"] == "pending", early.text

    invoice = table(
        [("Item", 1, 1), ("Amount", 1, 2)],
        [("Total", 2, 1), ("0.45", 1, 1), ("1,234", 1, 1)],
        [("-3", 1, 1), ("007", 1, 1)],
    )
    results = [
        {**done(job_id, 1, "Item Amount"), "tables": [invoice]},
        {**done(job_id, 2, "first line\nsecond line"), "tables": []},
        done(job_id, 3, "only text"),
    ]
    job = await finish(client, services, channel, job_id, results)
    assert job["downloads"] == [
        {"file_id": str(file_id), "kind": "xlsx", "url": f"/api/v1/download/{file_id}"}
    ]

    # Three clients at once share one build.
    url = job["downloads"][0]["url"].removeprefix("/api/v1")
    with caplog.at_level(logging.INFO, logger="ocr_gateway.convert.service"):
        responses = await asyncio.gather(*(client.get(url) for _ in range(3)))
    assert len({r.content for r in responses}) == 1
    assert sum("workbook built" in r.getMessage() for r in caplog.records) == 1
    response = responses[0]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == (
        'attachment; filename="smile-and-1-more.xlsx"'
    )
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["smile p1 t1", "report p1 text", "report p2 text"]
    sheet = book["smile p1 t1"]
    assert {str(r) for r in sheet.merged_cells.ranges} == {"B1:C1", "A2:A3"}
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [
        ["Item", "Amount", None],
        ["Total", 0.45, 1234],
        [None, -3, "007"],
    ]
    lines = [row[0].value for row in book["report p1 text"].iter_rows()]
    assert lines == ["first line", "second line"]
    assert book["report p2 text"]["A1"].value == "only text"

    # Built once and kept next to the pages: a second download is the same file.
    kept = [name for name in await job_names(services, job_id) if name.startswith("tables-")]
    assert len(kept) == 1 and kept[0].endswith(".xlsx")
    again = await client.get(f"/download/{file_id}")
    assert again.content == response.content
    assert [n for n in await job_names(services, job_id) if n.startswith("tables-")] == kept

    # Deleting the job forgets its download.
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 200
    assert (await client.get(f"/download/{file_id}")).status_code == 404
    assert await count_rows(services, "downloads") == 0


async def test_another_tenants_file_is_not_found(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    owner, other = {"X-Tenant-Id": "acme"}, {"X-Tenant-Id": "globex"}
    body = await convert(client, batch(("one.pdf", blank_pdf(1))), headers=owner, text_layer="off")
    job_id = body["job_id"]
    await wait_rendered(client, job_id)
    job = await finish(client, services, channel, job_id, [done(job_id, 1)], headers=owner)
    [download] = job["downloads"]
    path = f"/download/{download['file_id']}"
    assert (await client.get(path, headers=owner)).status_code == 200
    hidden = await client.get(path, headers=other)
    unknown_id = str(uuid.uuid4())
    missing = await client.get(f"/download/{unknown_id}", headers=other)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == "not_found"
    assert hidden.text.replace(download["file_id"], "<id>") == missing.text.replace(
        unknown_id, "<id>"
    )
    assert (await client.get(f"/jobs/{job_id}", headers=other)).status_code == 404


async def test_the_same_batch_again_is_the_same_job_unless_dedup_is_false(
    client: httpx.AsyncClient, services: Components
) -> None:
    files = batch(("a.png", sample("smile.png").read_bytes()), ("b.pdf", blank_pdf(1)))
    first = await convert(client, files)
    again = await convert(client, files, status=200)
    assert again["job_id"] == first["job_id"] and again["deduplicated"] is True
    assert again["files"] == first["files"]
    other_option = await convert(client, files, text_layer="off")
    fresh = await convert(client, files, dedup="false")
    assert len({first["job_id"], other_option["job_id"], fresh["job_id"]}) == 3
    reordered = await convert(client, list(reversed(files)))
    assert reordered["job_id"] != first["job_id"]
    assert await count_rows(services, "downloads") == 4
    for job_id in (first["job_id"], other_option["job_id"], fresh["job_id"], reordered["job_id"]):
        await wait_rendered(client, job_id)


async def test_born_digital_tables_are_read_at_render_time_and_scans_go_to_ocr_asking_for_tables(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    cells = TABLES[0]
    files = batch(
        ("prices.pdf", table_pdf(cells, ruled=True, merge_header=True)),
        ("scan.png", draw_table_png(cells, ruled=True)),
    )
    body = await convert(client, files)  # text_layer is auto by default here
    job_id = body["job_id"]
    await wait_rendered(client, job_id)
    shown = (await client.get(f"/jobs/{job_id}")).json()
    assert [(p["status"], p["source"]) for p in shown["pages"]] == [
        ("done", "text_layer"),
        ("pending", "ocr"),
    ]
    # The scan waits for an operator's start (manual dispatch), then asks the worker for tables.
    await asyncio.sleep(0.5)
    assert await drain(channel, services.settings.pages_queue, idle=0.3) == []
    assert (await client.post("/admin/start")).status_code == 202
    [message] = await drain(channel, services.settings.pages_queue)
    page = orjson.loads(message)
    assert (page["job_id"], page["page_number"], page["tables"]) == (job_id, 2, True)

    await send_result(
        channel, services.settings.results_queue, {**done(job_id, 2, "scan text"), "tables": []}
    )
    job = await finish(client, services, channel, job_id, [])
    response = await client.get(job["downloads"][0]["url"].removeprefix("/api/v1"))
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["prices p1 t1", "scan p1 text"]
    sheet = book["prices p1 t1"]
    assert [str(r) for r in sheet.merged_cells.ranges] == ["C1:D1"]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values == [
        ["Item", "Qty", "Price", None],
        ["Apples", 1234, 0.45, -3],
        ["Pears", 17, 12.5, "+8"],
        ["Plums", 905, 3.07, -0.25],
        ["Figs", 42, 1000.0, 0],
    ]
    assert sheet["C3"].number_format == "0.00" and sheet["C5"].number_format == "#,##0.00"
    assert book["scan p1 text"]["A1"].value == "scan text"


async def test_with_automatic_dispatch_the_batch_goes_out_at_once(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(tmp_path, dispatch_mode="auto") as gateway:
        files = batch(
            ("a.png", sample("smile.png").read_bytes()), ("b.jpg", sample("image.jpg").read_bytes())
        )
        body = await convert(gateway.client, files)
        job_id = body["job_id"]
        queue = gateway.settings.pages_queue
        bodies: list[bytes] = []

        async def published() -> bool:
            bodies.extend(await drain(channel, queue, idle=0.2))
            return len(bodies) >= 2

        await wait_until(published, what="the batch's pages published without a start")
        sent = sorted(
            (m["job_id"], m["page_number"], m["tables"]) for m in map(orjson.loads, bodies)
        )
        assert sent == [(job_id, 1, True), (job_id, 2, True)]


async def test_a_failed_page_leaves_a_failed_job_whose_workbook_says_why(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    body = await convert(client, batch(("two.pdf", blank_pdf(2))), text_layer="off")
    job_id = body["job_id"]
    await wait_rendered(client, job_id)
    failed = {"job_id": job_id, "page_number": 2, "status": "failed", "error": "engine crashed"}
    for result in (done(job_id, 1, "page one"), failed):
        await send_result(channel, services.settings.results_queue, result)

    async def ended() -> bool:
        job = (await client.get(f"/jobs/{job_id}")).json()
        return bool(job["status"] == "failed")

    await wait_until(ended, what="the job failed")
    [download] = (await client.get(f"/jobs/{job_id}")).json()["downloads"]
    response = await client.get(download["url"].removeprefix("/api/v1"))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="two.xlsx"'
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["two p1 text", "two p2 text"]
    assert book["two p1 text"]["A1"].value == "page one"
    assert book["two p2 text"]["A1"].value == "This page was not read: engine crashed"


async def test_a_cancelled_job_lists_no_download_and_other_jobs_none_at_all(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    body = await convert(client, batch(("one.pdf", blank_pdf(1))), text_layer="off")
    job_id = body["job_id"]
    await wait_rendered(client, job_id)
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["status"], job["downloads"]) == ("cancelled", [])
    refused = await client.get(f"/download/{await file_id_of(services, job_id)}")
    assert refused.status_code == 409 and refused.json()["status"] == "cancelled"

    plain = await client.post("/ocrpdf", files={"file": ("p.pdf", blank_pdf(1))})
    plain_id = plain.json()["job_id"]
    await wait_rendered(client, plain_id)
    await send_result(channel, services.settings.results_queue, done(plain_id, 1))

    async def completed() -> bool:
        return bool((await client.get(f"/jobs/{plain_id}")).json()["status"] == "completed")

    await wait_until(completed, what="the plain job completed")
    assert (await client.get(f"/jobs/{plain_id}")).json()["downloads"] == []


@pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra (make install does)",
)
async def test_a_real_worker_reads_the_scanned_table_and_the_workbook_holds_every_table(
    client: httpx.AsyncClient, services: Components
) -> None:
    """The whole path with the real OCR worker: the born-digital table read at render time, the
    scanned one found by the worker, a page without a table as its text lines."""
    scan = ruled_pages()[1]
    files = batch(
        ("prices.pdf", table_pdf(TABLES[0], ruled=True)),
        ("cities.png", scan.data),
        ("smile.png", sample("smile.png").read_bytes()),
    )
    job_id = (await convert(client, files))["job_id"]
    await wait_rendered(client, job_id)
    try:
        async with worker_process(services.settings, start_timeout=120):
            assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
            job = await wait_for_job(
                client, job_id, lambda job: job["status"] in ("completed", "failed"), 180, 0.2
            )
    except LogLineMissing as missing:
        pytest.fail(str(missing))
    assert job["status"] == "completed", job
    shown = (await client.get(f"/jobs/{job_id}")).json()
    assert [page["source"] for page in shown["pages"]] == ["text_layer", "ocr", "ocr"]
    [download] = shown["downloads"]
    response = await client.get(download["url"].removeprefix("/api/v1"))
    assert response.status_code == 200, response.text
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["prices p1 t1", "cities p1 t1", "smile p1 text"]

    def texts(sheet: Any) -> list[list[str]]:
        return [
            ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
        ]

    prices = texts(book["prices p1 t1"])
    assert prices[0] == TABLES[0][0] and prices[1] == ["Apples", "1234", "0.45", "-3"]
    cities = texts(book["cities p1 t1"])
    expected = [[cell.replace(",", "") for cell in row] for row in scan.cells]
    found = [
        value == want or value.rstrip("0").rstrip(".") == want.rstrip("0").rstrip(".")
        for got_row, want_row in zip(cities, expected, strict=False)
        for value, want in zip(got_row, want_row, strict=False)
    ]
    cells = sum(len(row) for row in expected)
    assert sum(found) / cells >= 0.95, cities

"""Upload → render → start → messages on the pages queue → results back → job completed."""

from __future__ import annotations

import base64
import io
import uuid
from pathlib import Path

import httpx
import orjson
import pymupdf
from aio_pika.abc import AbstractChannel
from PIL import Image
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import sample
from tests.support.gateway import drain
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.results import send_result
from tests.support.stored import job_artefact, page_numbers
from tests.support.waiting import wait_until


async def test_geotopo_renders_117_pngs_and_publishes_117_messages(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    source = sample("GeoTopo-komprimiert.pdf")
    accepted = await upload(client, source)
    assert accepted["status"] == "pending"
    assert accepted["total_page_number"] == 117
    assert accepted["filename"] == "GeoTopo-komprimiert.pdf"
    job_id = accepted["job_id"]

    job = await wait_rendered(client, job_id)
    assert await page_numbers(services, job_id) == list(range(1, 118))
    assert [p["page_number"] for p in job["pages"]] == list(range(1, 118))
    assert all(p["status"] == "pending" for p in job["pages"])

    async def upload_removed() -> bool:  # right after the last page is recorded
        return not any(Path(services.settings.temp_dir).glob("*.upload"))

    await wait_until(upload_removed, timeout=10)

    started = await client.post(f"/admin/start/{job_id}")
    assert started.status_code == 202
    assert started.json()["pending_pages"] == 117

    async def all_queued() -> bool:
        detail = await job_detail(client, job_id)
        return all(p["status"] == "queued" for p in detail["pages"])

    await wait_until(all_queued)
    assert (await job_detail(client, job_id))["status"] == "queued"

    bodies = await drain(channel, services.settings.pages_queue)
    messages = [orjson.loads(body) for body in bodies]
    assert len(messages) == 117
    assert sorted(m["page_number"] for m in messages) == list(range(1, 118))
    assert {m["job_id"] for m in messages} == {job_id}

    document = pymupdf.open(source)
    dpi = services.settings.render_dpi
    for message in messages[:5]:
        png = base64.b64decode(message["image_base64"])
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        page = document[message["page_number"] - 1]
        assert abs(image.width - page.rect.width * dpi / 72) <= 1
        assert abs(image.height - page.rect.height * dpi / 72) <= 1
        stored = await job_artefact(services, job_id, f"{message['page_number']}.png")
        assert png == stored


async def test_results_complete_the_job_and_duplicates_count_once(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    accepted = await upload(client, sample("pdflatex-4-pages.pdf"))
    job_id = accepted["job_id"]
    await wait_rendered(client, job_id)
    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
    bodies = await drain(channel, services.settings.pages_queue)
    assert len(bodies) == 4

    results_queue = services.settings.results_queue
    for number in (1, 2, 3):
        result = {
            "job_id": job_id,
            "page_number": number,
            "status": "done",
            "text": f"text {number}",
        }
        await send_result(channel, results_queue, result)
        await send_result(channel, results_queue, result)  # a redelivery

    async def three_done() -> bool:
        return bool((await job_detail(client, job_id))["completed_pages"] == 3)

    await wait_until(three_done)
    await send_result(
        channel,
        results_queue,
        {"job_id": job_id, "page_number": 4, "status": "failed", "text": "", "error": "blurry"},
    )

    async def job_failed() -> bool:
        return bool((await job_detail(client, job_id))["status"] == "failed")

    await wait_until(job_failed)
    job = await job_detail(client, job_id)
    assert job["failed_pages"] == 1 and job["completed_pages"] == 3
    assert job["pages"][3]["error"] == "blurry"

    # Start the failed page again: it is published once more, and its late success completes
    # the job; a late duplicate "failed" for a done page changes nothing.
    again = await client.post(f"/admin/start/{job_id}/page/4")
    assert again.status_code == 202
    assert len(await drain(channel, services.settings.pages_queue)) == 1
    boxes = [{"bbox": [1, 2, 30, 40], "text": "word", "confidence": 0.9}]
    await send_result(
        channel,
        results_queue,
        {"job_id": job_id, "page_number": 4, "status": "done", "text": "four", "boxes": boxes},
    )
    await send_result(
        channel, results_queue, {"job_id": job_id, "page_number": 4, "status": "failed"}
    )

    async def completed() -> bool:
        return bool((await job_detail(client, job_id))["status"] == "completed")

    await wait_until(completed)
    await wait_until(lambda: _queue_empty(channel, results_queue))
    job = await job_detail(client, job_id)
    assert job["completed_pages"] == 4 and job["failed_pages"] == 0
    assert [p["text"] for p in job["pages"]] == ["text 1", "text 2", "text 3", "four"]
    assert job["pages"][3]["boxes"][0]["text"] == "word"
    assert job["pages"][3]["status"] == "done"

    listed = (await client.get("/admin/jobs")).json()
    assert job_id not in {item["job_id"] for item in listed["items"]}, "completed jobs are hidden"


async def _queue_empty(channel: AbstractChannel, name: str) -> bool:
    return await queue_depth(channel, name) == 0


async def test_unknown_and_malformed_results_are_dropped_or_dead_lettered(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    results_queue = services.settings.results_queue
    await send_result(
        channel,
        results_queue,
        {"job_id": str(uuid.uuid4()), "page_number": 1, "status": "done", "text": "x"},
    )
    await send_result(channel, results_queue, b"{not json")
    await send_result(channel, results_queue, {"job_id": "nope", "page_number": 0})

    async def dead_lettered() -> bool:
        return await queue_depth(channel, f"{results_queue}.dead") == 2

    await wait_until(dead_lettered)
    await wait_until(lambda: _queue_empty(channel, results_queue))
    # The consumer is still consuming: a valid result after the bad ones is stored.
    accepted = await upload(client, sample("002-trivial-libre-office-writer.pdf"))
    await wait_rendered(client, accepted["job_id"])
    await send_result(
        channel,
        results_queue,
        {"job_id": accepted["job_id"], "page_number": 1, "status": "done", "text": "ok"},
    )

    async def stored() -> bool:
        return bool((await job_detail(client, accepted["job_id"]))["status"] == "completed")

    await wait_until(stored)
    async with services.sessions() as session:
        assert (await session.scalar(text("SELECT count(*) FROM pages WHERE text = 'ok'"))) == 1


async def test_image_upload_becomes_one_page(
    client: httpx.AsyncClient, services: Components
) -> None:
    accepted = await upload(client, sample("image.jpg"), kind="image")
    assert accepted["total_page_number"] == 1
    job = await wait_rendered(client, accepted["job_id"])
    assert job["pages"][0]["path"] == f"{accepted['job_id']}/1.png", "the page's key"
    png = await job_artefact(services, accepted["job_id"], "1.png")
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (300, 200)
        assert image.mode == ("L" if services.settings.render_grayscale else "RGB")

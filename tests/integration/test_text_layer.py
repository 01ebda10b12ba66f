"""Text layer first: with `text_layer=auto`, a PDF page whose own text layer passes the quality
check is recorded done at render time (`source: "text_layer"`), with its `page.done` event and,
when it is the job's last, `job.completed`, and is never published; every other page waits for
OCR as before. Through the real app, database, render pool and broker, with real PDFs.
"""

from __future__ import annotations

import random
from typing import Any

import httpx
import pymupdf
import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import sample
from tests.support.http import wait_rendered
from tests.support.results import done, send_result
from tests.support.waiting import wait_until

BORN_DIGITAL = "pdflatex-4-pages.pdf"
SCANNED = "imagemagick-images.pdf"
PARAGRAPH = (
    "The gateway reads the text of a born-digital page from the document itself, so that the"
    " workers spend their time on the pages that need them. Each line keeps its box on the"
    " page image, and the text of the page is in reading order, as a worker would send it."
)


def image_page(doc: pymupdf.Document) -> pymupdf.Page:
    """A page covered by a picture (a scan, as far as its text layer knows)."""
    page = doc.new_page(width=595, height=842)
    page.insert_image(page.rect, filename=str(sample("image.jpg")))
    return page


def mixed_pdf() -> bytes:
    """Page 1 born-digital text, page 2 a picture without text."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_textbox(pymupdf.Rect(72, 72, 523, 400), PARAGRAPH, fontsize=12)
    image_page(doc)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def junk_layer_pdf() -> bytes:
    """A scanned-looking page under an invisible layer of junk, and a page of visible junk."""
    rng = random.Random(15)
    alphabet = "#%&*@!?^~<>[]{}|\\/$+=0123456789qxzjkvwQXZJK"

    def junk_line() -> str:
        return " ".join(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 9))) for _ in range(10)
        )

    doc = pymupdf.open()
    page = image_page(doc)
    for row in range(30):
        page.insert_text((40, 60 + 24 * row), junk_line(), fontsize=10, render_mode=3)
    page = doc.new_page(width=595, height=842)
    for row in range(30):
        page.insert_text((40, 60 + 24 * row), junk_line(), fontsize=10)
    data: bytes = doc.tobytes()
    doc.close()
    return data


async def upload_pdf(
    client: httpx.AsyncClient, name: str, content: bytes, **params: str
) -> dict[str, Any]:
    response = await client.post("/ocrpdf", files={"file": (name, content)}, params=params)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def client_job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_status(client: httpx.AsyncClient, job_id: str, status: str) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal latest
        latest = await client_job(client, job_id)
        return bool(latest["status"] == status)

    await wait_until(reached, 60, what=f"job {job_id} to be {status}")
    return latest


async def events_of(services: Components, job_id: str) -> list[tuple[str, int | None]]:
    async with services.sessions() as session:
        rows = await session.execute(
            text("SELECT type, page_number FROM job_events WHERE job_id = :j ORDER BY id"),
            {"j": job_id},
        )
        return [(row.type, row.page_number) for row in rows]


async def assert_nothing_published(
    client: httpx.AsyncClient, channel: AbstractChannel, services: Components, job_id: str
) -> None:
    """Even with an operator's start in force, no page of the job reaches the queue."""
    started = await client.post("/admin/start")
    assert started.status_code == 202, started.text
    await client.post("/admin/stop")
    assert await queue_depth(channel, services.settings.pages_queue) == 0
    async with services.sessions() as session:
        attempts = await session.scalar(
            text("SELECT coalesce(sum(publish_attempts), 0) FROM pages WHERE job_id = :j"),
            {"j": job_id},
        )
    assert attempts == 0


async def test_a_born_digital_pdf_is_read_from_its_text_layer_and_completes_without_a_start(
    client: httpx.AsyncClient, channel: AbstractChannel, services: Components
) -> None:
    accepted = await upload_pdf(
        client, BORN_DIGITAL, sample(BORN_DIGITAL).read_bytes(), text_layer="auto"
    )
    job_id = accepted["job_id"]
    job = await wait_status(client, job_id, "completed")
    assert job["completed_pages"] == 4
    assert [page["source"] for page in job["pages"]] == ["text_layer"] * 4
    assert {page["status"] for page in job["pages"]} == {"done"}
    # Each page's text and line boxes, in the shape a worker's result has.
    with pymupdf.open(sample(BORN_DIGITAL)) as doc:
        expected_words = set(doc[0].get_text().split())
        width, height = doc[0].rect.width, doc[0].rect.height
    page = (await client.get(f"/jobs/{job_id}/pages/1")).json()
    assert page["source"] == "text_layer"
    assert page["status"] == "done"
    words = set(page["text"].split())
    assert len(words & expected_words) >= 0.9 * len(expected_words)
    scale = services.settings.render_dpi / 72
    assert page["boxes"], page
    for box in page["boxes"]:
        xs = [point[0] for point in box["polygon"]]
        ys = [point[1] for point in box["polygon"]]
        assert min(xs) >= 0 and max(xs) <= width * scale + 1
        assert min(ys) >= 0 and max(ys) <= height * scale + 1
    # The events a worker's results would have made: a page.done each, then job.completed.
    events = await events_of(services, job_id)
    assert sorted(n or 0 for kind, n in events if kind == "page.done") == [1, 2, 3, 4]
    assert events[-1] == ("job.completed", None)
    assert [kind for kind, _ in events].count("job.completed") == 1
    await assert_nothing_published(client, channel, services, job_id)


async def test_a_scanned_pdf_waits_for_ocr_with_auto(client: httpx.AsyncClient) -> None:
    accepted = await upload_pdf(client, SCANNED, sample(SCANNED).read_bytes(), text_layer="auto")
    await wait_rendered(client, accepted["job_id"])
    job = await client_job(client, accepted["job_id"])
    assert job["status"] == "pending"
    assert {page["status"] for page in job["pages"]} == {"pending"}
    assert {page["source"] for page in job["pages"]} == {"ocr"}
    assert job["completed_pages"] == 0


async def test_a_junk_text_layer_goes_to_ocr(client: httpx.AsyncClient) -> None:
    accepted = await upload_pdf(client, "junk.pdf", junk_layer_pdf(), text_layer="auto")
    await wait_rendered(client, accepted["job_id"])
    job = await client_job(client, accepted["job_id"])
    assert [(p["status"], p["source"]) for p in job["pages"]] == [("pending", "ocr")] * 2


@pytest.mark.parametrize("how", ["default", "query", "form"])
async def test_off_sends_every_page_to_ocr(client: httpx.AsyncClient, how: str) -> None:
    content = sample(BORN_DIGITAL).read_bytes()
    if how == "form":
        response = await client.post(
            "/ocrpdf", files={"file": (BORN_DIGITAL, content)}, data={"text_layer": "off"}
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
    elif how == "query":
        accepted = await upload_pdf(client, BORN_DIGITAL, content, text_layer="off")
    else:  # OCR_GATEWAY_TEXT_LAYER's default is off
        accepted = await upload_pdf(client, BORN_DIGITAL, content)
    await wait_rendered(client, accepted["job_id"])
    job = await client_job(client, accepted["job_id"])
    assert [(p["status"], p["source"]) for p in job["pages"]] == [("pending", "ocr")] * 4


async def test_a_form_field_turns_it_on_for_a_batch(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/jobs",
        files=[("files", (BORN_DIGITAL, sample(BORN_DIGITAL).read_bytes()))],
        data={"text_layer": "auto"},
    )
    assert response.status_code == 202, response.text
    (job,) = response.json()["jobs"]
    finished = await wait_status(client, job["job_id"], "completed")
    assert {page["source"] for page in finished["pages"]} == {"text_layer"}


async def test_a_mixed_pdf_reads_one_page_and_completes_when_ocr_sends_the_other(
    client: httpx.AsyncClient, channel: AbstractChannel, services: Components
) -> None:
    accepted = await upload_pdf(client, "mixed.pdf", mixed_pdf(), text_layer="auto")
    job_id = accepted["job_id"]
    await wait_rendered(client, job_id)
    job = await client_job(client, job_id)
    assert [(p["status"], p["source"]) for p in job["pages"]] == [
        ("done", "text_layer"),
        ("pending", "ocr"),
    ]
    assert job["status"] == "pending"
    assert job["completed_pages"] == 1
    page = (await client.get(f"/jobs/{job_id}/pages/1")).json()
    assert "born-digital page" in page["text"].replace("\n", " ")
    # The OCR worker answers page 2: the job completes with both sources.
    await send_result(channel, services.settings.results_queue, done(job_id, 2, "a picture"))
    job = await wait_status(client, job_id, "completed")
    assert [p["source"] for p in job["pages"]] == ["text_layer", "ocr"]
    events = await events_of(services, job_id)
    assert [e for e in events if e[0] in ("page.done", "job.completed")] == [
        ("page.done", 1),
        ("page.done", 2),
        ("job.completed", None),
    ]

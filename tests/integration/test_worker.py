"""The OCR worker against the real PostgreSQL and RabbitMQ: pages in, text out, nothing lost.

Workers run as real `python -m ocr_gateway.worker` subprocesses, configured only through the
`OCR_GATEWAY_*` environment, like a worker on another machine; tests that need no OCR run the
consumer in-process with a stand-in recogniser.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pymupdf
import pytest
from aio_pika.abc import AbstractChannel

from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from ocr_gateway.launcher.children import start_workers, stop_children
from ocr_gateway.messaging.amqp import dead_letter_queue, queue_depth
from ocr_gateway.worker.consumer import OcrWorker
from ocr_gateway.worker.layout import OcrOutput
from tests.support.documents import blank_pdf, sample
from tests.support.http import job_detail, upload, wait_for_job, wait_rendered
from tests.support.waiting import wait_until
from tests.support.worker import LogLineMissing, WorkerProcess, worker_env
from tests.support.worker import worker_process as running_worker

RAPIDOCR_MISSING = importlib.util.find_spec("rapidocr_onnxruntime") is None
needs_ocr = pytest.mark.skipif(
    RAPIDOCR_MISSING,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra "
    "(pip install -e '.[ocr]'; `make test` does)",
)
SHORT_PAGE = "002-trivial-libre-office-writer.pdf"


# ---------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def worker_process(settings: Settings, **env: str) -> AsyncIterator[WorkerProcess]:
    """The shared worker harness; a log line the worker never writes fails the test."""
    try:
        # The harness's own options named, so that mypy can tell them from `env`'s strings.
        async with running_worker(settings, grace=None, start_timeout=90, **env) as worker:
            yield worker
    except LogLineMissing as missing:
        pytest.fail(str(missing))


def live_group_members(pgid: int) -> list[int]:
    """Processes of a process group that are still running (zombies do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


async def wait_settled(
    client: httpx.AsyncClient, job_id: str, timeout: float = 90
) -> dict[str, Any]:
    """Wait until the job is completed or failed; return it."""
    return await wait_for_job(
        client, job_id, lambda job: job["status"] in ("completed", "failed"), timeout, 0.2
    )


async def depth(channel: AbstractChannel, name: str) -> int:
    return await queue_depth(channel, name)


def text_layer_words(path: Path) -> set[str]:
    with pymupdf.open(path) as document:
        text = "".join(page.get_text() for page in document)
    return {word for word in re.findall(r"[A-Za-z]{5,}", text)}


# ---------------------------------------------------------------- end to end


@needs_ocr
async def test_a_worker_turns_an_uploaded_pdf_into_text_with_boxes(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    source = sample(SHORT_PAGE)
    accepted = await upload(client, source)
    job_id = accepted["job_id"]
    async with worker_process(services.settings) as worker:
        await wait_rendered(client, job_id)
        assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
        job = await wait_settled(client, job_id)
        # SIGTERM when idle: the worker stops consuming and exits cleanly.
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.process.wait(), 30) == 0
        await worker.reader
        assert worker.matching("worker stopped results=1")

    assert job["status"] == "completed", job
    assert job["completed_pages"] == 1 and job["failed_pages"] == 0
    page = job["pages"][0]
    expected = text_layer_words(source)
    found = set(re.findall(r"[A-Za-z]{5,}", page["text"]))
    assert len(expected & found) >= 0.8 * len(expected), (sorted(expected - found), page["text"])

    width = round(pymupdf.open(source)[0].rect.width * services.settings.render_dpi / 72)
    boxes = page["boxes"]
    assert boxes and all(set(box) >= {"bbox", "text", "confidence"} for box in boxes)
    assert all(0 <= box["bbox"][0] < box["bbox"][2] <= width for box in boxes)
    tops = [box["bbox"][1] for box in boxes]
    assert tops == sorted(tops), "lines are in reading order, top to bottom"
    assert page["text"].splitlines()[0].startswith(boxes[0]["text"])


@needs_ocr
async def test_a_worker_killed_mid_page_leaves_the_page_to_the_next_worker(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    settings = services.settings
    accepted = await upload(client, sample(SHORT_PAGE))
    job_id = accepted["job_id"]
    async with worker_process(settings) as first:
        await wait_rendered(client, job_id)
        assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
        await first.wait_for("ocr started")
        first.process.kill()  # the worker alone; its OCR process must notice and exit
        await first.process.wait()

        async def ocr_process_gone() -> bool:
            return not live_group_members(first.process.pid)

        await wait_until(ocr_process_gone, timeout=15)
    assert not first.matching("ocr finished")
    assert (await job_detail(client, job_id))["completed_pages"] == 0

    async with worker_process(settings) as second:
        assert "redelivered=True" in await second.wait_for("ocr started")
        job = await wait_settled(client, job_id)
        await second.wait_for("ocr finished")

    assert job["status"] == "completed"
    assert job["completed_pages"] == 1 and job["total_page_number"] == 1
    assert await depth(channel, settings.pages_queue) == 0
    assert await depth(channel, dead_letter_queue(settings.pages_queue)) == 0


@needs_ocr
async def test_a_page_delivered_twice_is_counted_once(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    settings = services.settings
    accepted = await upload(client, "one.pdf", blank_pdf(1))
    job_id = accepted["job_id"]
    await wait_rendered(client, job_id)
    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202

    # Take the published page off the queue and put it back twice, as a redelivery would.
    queue = await channel.declare_queue(settings.pages_queue, passive=True)
    original = None

    async def page_published() -> bool:
        nonlocal original
        original = await queue.get(no_ack=False, fail=False)
        return original is not None

    await wait_until(page_published)
    assert original is not None
    for _ in range(2):
        await channel.default_exchange.publish(
            aio_pika.Message(original.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=settings.pages_queue,
        )
    await original.ack()

    async with worker_process(settings) as worker:
        job = await wait_settled(client, job_id)
        await worker.wait_for("ocr finished", count=2)

        async def results_consumed() -> bool:
            return await depth(channel, settings.results_queue) == 0

        await wait_until(results_consumed)

    job = await job_detail(client, job_id)
    assert job["status"] == "completed"
    assert job["completed_pages"] == 1 and job["failed_pages"] == 0
    assert "Page 1" in job["pages"][0]["text"]


@needs_ocr
async def test_serve_starts_and_stops_its_workers(
    services: Components, channel: AbstractChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = services.settings
    for key, value in worker_env(settings).items():
        if key.startswith("OCR_GATEWAY_"):
            monkeypatch.setenv(key, value)
    workers = start_workers(2)
    try:
        underlay = await channel.get_underlay_channel()

        async def two_consumers() -> bool:
            declared = await underlay.queue_declare(settings.pages_queue, passive=True)
            return declared.consumer_count == 2

        await wait_until(two_consumers, timeout=60)
        await asyncio.to_thread(stop_children, workers, "OCR worker", grace=30)
        assert [worker.returncode for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


# ---------------------------------------------------------------- failures, in-process


async def test_unreadable_messages_are_dead_lettered_and_ocr_errors_become_failed_results(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    settings = services.settings

    async def recognize(image_base64: str) -> OcrOutput:
        if image_base64 == "explode":
            raise RuntimeError("the engine exploded")
        return OcrOutput("hello", [{"bbox": [1, 2, 30, 40], "text": "hello", "confidence": 0.5}])

    accepted = await upload(client, "two.pdf", blank_pdf(2))
    job_id = accepted["job_id"]
    await wait_rendered(client, job_id)

    stop, abandon = asyncio.Event(), asyncio.Event()
    worker = OcrWorker(settings, recognize, prefetch=2)
    running = asyncio.create_task(worker.run(stop, abandon))
    try:
        poison: list[bytes] = [
            b"{not json",
            b"[]",
            orjson.dumps({"job_id": "not-a-uuid", "page_number": 1, "image_base64": "x"}),
            orjson.dumps({"job_id": job_id, "page_number": 0, "image_base64": "x"}),
            orjson.dumps({"job_id": job_id, "page_number": 1}),
        ]
        valid = [
            {"job_id": job_id, "page_number": 1, "image_base64": "explode"},
            {"job_id": job_id, "page_number": 2, "image_base64": "aGVsbG8=", "extra": True},
        ]
        for body in [*poison, *(orjson.dumps(message) for message in valid)]:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=settings.pages_queue,
            )
        dead = dead_letter_queue(settings.pages_queue)

        async def all_dead_lettered() -> bool:
            return await depth(channel, dead) == len(poison)

        await wait_until(all_dead_lettered)
        job = await wait_settled(client, job_id, timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)

    assert worker.dead_lettered == len(poison) and worker.results == 2
    assert await depth(channel, settings.pages_queue) == 0, "nothing requeued forever"
    first, second = job["pages"]
    assert first["status"] == "failed" and "the engine exploded" in first["error"]
    assert second["status"] == "done" and second["text"] == "hello"
    assert second["boxes"] == [{"bbox": [1, 2, 30, 40], "text": "hello", "confidence": 0.5}]
    assert job["status"] == "failed" and job["failed_pages"] == 1


# ---------------------------------------------------------------- engines


@pytest.mark.skipif(
    shutil.which("tesseract") is None or importlib.util.find_spec("pytesseract") is None,
    reason="the tesseract engine needs the tesseract program and pytesseract",
)
def test_the_tesseract_engine_reads_a_rendered_page() -> None:
    from ocr_gateway.worker.engine import build_engine

    # 200 DPI: PyMuPDF records 199.9996 DPI in the PNG, which Tesseract misread on its own.
    with pymupdf.open(sample("pdflatex-4-pages.pdf")) as document:
        png = document[0].get_pixmap(dpi=200, colorspace=pymupdf.csGRAY).tobytes("png")
    output = build_engine("tesseract").recognize(png)
    assert output.text.startswith("Hello, here is some text without a meaning.")
    assert "the length of words should" in output.text
    assert output.boxes and all(0 <= (box["confidence"] or 0) <= 1 for box in output.boxes)


def test_a_worker_without_its_engine_exits_with_a_clear_message(services: Components) -> None:
    env = worker_env(services.settings, PATH="/nonexistent", OCR_GATEWAY_OCR_ENGINE="tesseract")
    completed = subprocess.run(
        [sys.executable, "-m", "ocr_gateway.worker"],
        env=env,
        cwd=services.settings.logs_dir.parent,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert b"tesseract" in completed.stderr

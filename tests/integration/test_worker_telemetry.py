"""A real worker process sends nothing anywhere but the broker, and starts warm.

- onnxruntime (under the RapidOCR engines) writes a device id and a database under
  `~/.cache/Microsoft/DeveloperTools/` unless `ORT_DISABLE_TELEMETRY=1` was set before it was
  imported (`worker/telemetry.py`). The worker runs with HOME in a temporary folder and reads
  a page; nothing may appear there. (Checked by hand: with the setting removed, this test fails,
  the folder holding `.onnxruntime/deviceid` and `onnxruntime.db`.)
- A worker is ready to take pages within 5 s of its start, and consumes the pages queue only
  once its OCR processes' engine is loaded: the queue has no consumer before the worker logs
  `OCR engine ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pymupdf
import pytest
from aio_pika.abc import AbstractChannel

from ocr_gateway.components import Components
from ocr_gateway.messaging.contracts import encode_page_message
from tests.support.documents import sample
from tests.support.worker import LogLineMissing, WorkerProcess, worker_process

ONNX_ENGINE = "rapidocr"  # an engine on onnxruntime, the library that would write telemetry
TELEMETRY_DIR = Path(".cache") / "Microsoft" / "DeveloperTools"
READY_WITHIN_S = 5.0
READY_ENGINE = "tesserocr"  # the default engine
RUN_AFTER_PAGE_S = 5.0  # onnxruntime wrote its files within 3 s of loading a model


@contextlib.asynccontextmanager
async def running(services: Components, **env: str) -> AsyncIterator[WorkerProcess]:
    try:
        async with worker_process(services.settings, grace=None, start_timeout=90, **env) as w:
            yield w
    except LogLineMissing as missing:
        pytest.fail(str(missing))


async def consumers(channel: AbstractChannel, queue: str) -> int:
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    return int(declared.consumer_count or 0)


def page_clip() -> bytes:
    """The top of a real sample page, 200 DPI gray as the gateway renders it."""
    with pymupdf.open(sample("pdflatex-4-pages.pdf")) as document:
        clip = pymupdf.Rect(0, 0, 612, 160)
        pixmap = document[0].get_pixmap(dpi=200, colorspace=pymupdf.csGRAY, clip=clip)
        png: bytes = pixmap.tobytes("png")
        return png


async def test_a_worker_reading_a_page_writes_no_telemetry(
    services: Components, channel: AbstractChannel, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    png = await asyncio.to_thread(page_clip)
    async with running(services, HOME=str(home), OCR_GATEWAY_OCR_ENGINE=ONNX_ENGINE) as worker:
        body = encode_page_message(uuid.uuid4(), 1, png)
        await channel.default_exchange.publish(
            aio_pika.Message(body, content_type="application/json"),
            routing_key=services.settings.pages_queue,
        )
        finished = await worker.wait_for("ocr finished", timeout=120)
        assert "status=done" in finished
        await asyncio.sleep(RUN_AFTER_PAGE_S)
    written = [str(path.relative_to(home)) for path in home.rglob("*")]
    assert not (home / TELEMETRY_DIR).exists(), f"onnxruntime telemetry written: {written}"


async def test_a_worker_is_ready_within_5_s_and_consumes_only_with_its_engine_loaded(
    services: Components, channel: AbstractChannel
) -> None:
    queue = services.settings.pages_queue
    assert await consumers(channel, queue) == 0
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen_at: float | None = None

    async def watch() -> None:
        """The first moment the queue has a consumer, seen from outside the worker."""
        nonlocal seen_at
        while await consumers(channel, queue) == 0:  # noqa: ASYNC110 (the broker's count)
            await asyncio.sleep(0.02)
        seen_at = loop.time() - started

    watching = asyncio.create_task(watch())
    try:
        async with running(services, OCR_GATEWAY_OCR_ENGINE=READY_ENGINE) as worker:
            await asyncio.wait_for(watching, 10)
            lines = list(worker.lines)
    finally:
        watching.cancel()
    log = "\n".join(lines)
    ready = next(i for i, line in enumerate(lines) if "OCR engine ready" in line)
    consuming = next(i for i, line in enumerate(lines) if "worker consuming" in line)
    # The worker consumes (basic.consume, then this line) only after its engine was ready.
    assert ready < consuming, log
    ready_s = float(lines[ready].split("seconds=")[1].split()[0])
    consuming_s = float(lines[consuming].split("seconds=")[1].split()[0])
    assert ready_s <= consuming_s < READY_WITHIN_S, log
    assert seen_at is not None and seen_at < READY_WITHIN_S, f"consumer after {seen_at} s\n{log}"

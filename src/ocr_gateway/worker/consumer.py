"""The OCR worker: pages queue in, OCR in a process pool, confirmed results out.

Delivery is at-least-once and every step is ordered so nothing is lost:
- at most `ocr_processes` page messages are held unacked (`prefetch_count`), one per OCR process,
  so a task page (a priority message) waits behind at most that many batch pages;
- a page message is acked only after its result was confirmed by the broker, so a worker that
  dies at any point leaves the page to RabbitMQ, which redelivers it; a result published twice
  is counted once by the gateway;
- a message that cannot be read is rejected without requeue and lands in `<pages>.dead`;
- an OCR error becomes a `failed` result carrying the error, then the page is acked;
- SIGTERM/SIGINT stop the consumer, let pages in flight finish for `ocr_stop_grace_s`, and
  abandon the rest unacked (a second signal abandons them at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from ocr_gateway.core.logging import configure_logging
from ocr_gateway.core.process_pool import WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.messaging.amqp import (
    CONNECT_TIMEOUT_S,
    PublishFailed,
    declare_pages_queue,
    declare_queue,
    publish_confirmed,
    reopen_if_closed,
)
from ocr_gateway.messaging.contracts import DEFAULT_TASK, PageMessage, ResultMessage
from ocr_gateway.metrics import registry as metrics
from ocr_gateway.metrics.server import serve_metrics
from ocr_gateway.worker.engine import EngineUnavailable, check_engine
from ocr_gateway.worker.images import ImageFetchFailed, PageImages
from ocr_gateway.worker.layout import OcrOutput
from ocr_gateway.worker.process import (
    START_TIMEOUT_S,
    PageImageInvalid,
    engine_name,
    ocr_pool,
    recognize_page,
)
from ocr_gateway.worker.regions import region_task_page

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0
# A page whose image URL did not answer waits this long before it goes back to the queue.
IMAGE_RETRY_DELAY_S = 2.0
MAX_CONNECT_BACKOFF_S = 30.0
# When this process started (its imports included), for the "OCR engine ready" log line.
STARTED = time.monotonic()


class WorkerFailed(Exception):
    """The worker cannot serve: its OCR processes did not start."""


# `recognize(image_base64)`, or `recognize(image_base64, tables=True)` for a page that asks
# for its tables too, or `recognize(image_base64, task=..., boxes=...)` for a `detect` or
# `recognize` page (a plain one-argument function serves workers that never get those).
Recognize = Callable[..., Awaitable[OcrOutput]]


class ResultPublisher:
    """Persistent, mandatory publishes to the results queue, each awaited until confirmed."""

    def __init__(self, channel: AbstractChannel, queue: str, timeout: float) -> None:
        self.channel = channel
        self.queue = queue
        self.timeout = timeout
        self._reopening = asyncio.Lock()

    async def _open(self) -> AbstractChannel:
        return await reopen_if_closed(self.channel, self._reopening)

    async def publish(self, result: ResultMessage) -> None:
        await publish_confirmed(
            self._open,
            self.queue,
            result.encode(),
            message_id=result.message_id,
            timeout=self.timeout,
        )


class OcrWorker:
    """Consumes the pages queue until `stop` is set; `recognize` runs OCR off the loop."""

    def __init__(
        self,
        settings: Settings,
        recognize: Recognize,
        *,
        prefetch: int,
        warm: Awaitable[object] | None = None,
    ) -> None:
        self.settings = settings
        self.recognize = recognize
        self.prefetch = prefetch
        # Consuming starts only once this is done (the OCR processes' engines are loaded), so
        # no page waits on a cold engine; connecting and declaring overlap with the loading.
        self.warm = warm
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._publisher: ResultPublisher | None = None
        # A page's image: inline, or fetched from its `image_url` (worker/images.py).
        self.images = PageImages(
            timeout_s=settings.image_fetch_timeout_s, max_bytes=settings.image_fetch_max_bytes
        )
        self.results = 0
        self.dead_lettered = 0

    async def run(self, stop: asyncio.Event, abandon: asyncio.Event) -> None:
        connection = await self._connect(stop)
        if connection is None:
            return
        try:
            publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            await declare_queue(publish_channel, self.settings.results_queue)
            self._publisher = ResultPublisher(
                publish_channel, self.settings.results_queue, self.settings.publish_timeout_s
            )
            consume_channel = await connection.channel()
            # The prefetch also bounds how long a task page waits behind batch pages this
            # worker already holds (docs/worker.md, Priority).
            await consume_channel.set_qos(prefetch_count=self.prefetch)
            declared = await declare_pages_queue(consume_channel, self.settings.pages_queue)
            pages = declared.queue
            if self.warm is not None and not await _first(self.warm, stop):
                return
            tag = await pages.consume(self._on_message)
            log.info(
                "worker consuming queue=%s results=%s prefetch=%d priority=%s seconds=%.2f",
                self.settings.pages_queue,
                self.settings.results_queue,
                self.prefetch,
                declared.prioritized,
                time.monotonic() - STARTED,
            )
            await stop.wait()
            self._stopping = True
            log.info("worker stopping: no new pages, %d in flight", len(self._inflight))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pages.cancel(tag), CONNECT_TIMEOUT_S)
            await self._finish_inflight(abandon)
        finally:
            # Closing the connection hands every unacked page back to RabbitMQ.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT_S)
            await self.images.close()
        log.info("worker stopped results=%d dead_lettered=%d", self.results, self.dead_lettered)

    async def _connect(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        """Connect, retrying with backoff until RabbitMQ answers or a stop is asked for."""
        delay = RETRY_DELAY_S
        name = f"ocr-gateway-worker {socket.gethostname()}:{os.getpid()}"
        while not stop.is_set():
            try:
                return await aio_pika.connect_robust(
                    self.settings.rabbitmq_url.get_secret_value(),
                    timeout=CONNECT_TIMEOUT_S,
                    client_properties={"connection_name": name},
                )
            except Exception as exc:
                log.warning("cannot reach RabbitMQ, retrying in %.0fs: %s", delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(MAX_CONNECT_BACKOFF_S, delay * 2)
        return None

    async def _finish_inflight(self, abandon: asyncio.Event) -> None:
        tasks = set(self._inflight)
        if not tasks:
            return
        finished: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
        abandoned: asyncio.Future[Any] = asyncio.ensure_future(abandon.wait())
        await asyncio.wait(
            {finished, abandoned},
            timeout=self.settings.ocr_stop_grace_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        abandoned.cancel()
        if not finished.done():
            log.warning("abandoning %d pages in flight; RabbitMQ redelivers them", len(tasks))
            for task in tasks:
                task.cancel()
            await asyncio.gather(finished, return_exceptions=True)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Called by aio-pika per delivery: hand the page to its own task and return."""
        if self._stopping:
            # Delivered while the consumer was being cancelled: give it back now.
            await _settle(message, message.nack(requeue=True))
            return
        task = asyncio.create_task(self._handle(message), name="ocr page")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            page = PageMessage.model_validate_json(message.body)
        except ValidationError as exc:
            log.error(
                "unreadable page message dead-lettered message_id=%s: %s",
                message.message_id,
                exc.errors(include_url=False, include_input=False)[:3],
            )
            if await _settle(message, message.reject(requeue=False)):
                self.dead_lettered += 1
            return
        try:
            await self._process(page, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "page left unacked job_id=%s page_number=%d", page.job_id, page.page_number
            )

    async def _process(self, page: PageMessage, message: AbstractIncomingMessage) -> None:
        log.info(
            "ocr started job_id=%s page_number=%d redelivered=%s",
            page.job_id,
            page.page_number,
            message.redelivered,
        )
        started = time.monotonic()
        try:
            image_base64 = await self.images.image_base64(page)
            if page.task != DEFAULT_TASK:
                # Detection alone, or recognition of the boxes carried (worker/regions.py).
                asked = None if page.boxes is None else [b.model_dump() for b in page.boxes]
                output = await self.recognize(image_base64, task=page.task, boxes=asked)
            elif page.tables:
                output = await self.recognize(image_base64, tables=True)
            else:
                output = await self.recognize(image_base64)
            result = ResultMessage.done(page, output.text, output.boxes, output.tables)
        except ImageFetchFailed as exc:
            if exc.transient:
                log.warning(
                    "page image not fetched, page requeued job_id=%s page_number=%d: %s",
                    page.job_id,
                    page.page_number,
                    exc,
                )
                await asyncio.sleep(IMAGE_RETRY_DELAY_S)
                await _settle(message, message.nack(requeue=True))
                return
            result = ResultMessage.failed(page, str(exc))
        except WorkerLost as exc:
            if not message.redelivered:
                # Perhaps another page crashed the pool: one more try, then a failed result.
                log.warning(
                    "OCR process lost, page requeued job_id=%s page_number=%d: %s",
                    page.job_id,
                    page.page_number,
                    exc,
                )
                await _settle(message, message.nack(requeue=True))
                return
            result = ResultMessage.failed(page, f"{exc} (twice)")
        except PageImageInvalid as exc:
            result = ResultMessage.failed(page, str(exc))
        except Exception as exc:
            result = ResultMessage.failed(page, f"OCR failed: {type(exc).__name__}: {exc}")
        assert self._publisher is not None
        try:
            await self._publisher.publish(result)
        except PublishFailed as exc:
            log.warning(
                "result not confirmed, page requeued job_id=%s page_number=%d: %s",
                page.job_id,
                page.page_number,
                exc,
            )
            await asyncio.sleep(RETRY_DELAY_S)
            await _settle(message, message.nack(requeue=True))
            return
        if await _settle(message, message.ack()):
            self.results += 1
        log.info(
            "ocr finished job_id=%s page_number=%d status=%s chars=%d boxes=%d%s seconds=%.2f%s",
            page.job_id,
            page.page_number,
            result.status,
            len(result.text),
            len(result.boxes or []),
            "" if result.tables is None else f" tables={len(result.tables)}",
            time.monotonic() - started,
            f" error={result.error}" if result.error else "",
        )


async def _first(work: Awaitable[object], stop: asyncio.Event) -> bool:
    """Wait for `work` (raising its error) unless a stop comes first: then False."""
    done = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not done.done():
        done.cancel()
        return False
    done.result()
    return True


async def _settle(message: AbstractIncomingMessage, action: Awaitable[None]) -> bool:
    """Ack, nack or reject; after a lost channel RabbitMQ has requeued the page already."""
    try:
        await action
    except Exception as exc:
        log.warning("could not settle message_id=%s: %s", message.message_id, exc)
        return False
    return True


# ---------------------------------------------------------------- the worker process


def run_worker(settings: Settings) -> int:
    """`ocr-gateway worker`: returns the process exit code."""
    configure_logging(settings.logs_dir, settings.log_level)
    try:
        check_engine(settings.ocr_engine)
    except EngineUnavailable as exc:
        log.error("%s", exc)
        return 2
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    abandon = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: abandoning pages in flight", signal.Signals(signum).name)
            abandon.set()
        else:
            log.info("%s: stopping", signal.Signals(signum).name)
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    pool = ocr_pool(settings.ocr_engine, settings.ocr_processes)
    try:
        log.info(
            "worker starting engine=%s processes=%d", settings.ocr_engine, settings.ocr_processes
        )

        async def warm_pool() -> None:
            try:
                await pool.start(engine_name, START_TIMEOUT_S)
            except Exception as exc:
                raise WorkerFailed(f"the OCR processes did not start: {exc}") from exc
            log.info(
                "OCR engine ready engine=%s processes=%d seconds=%.2f",
                settings.ocr_engine,
                settings.ocr_processes,
                time.monotonic() - STARTED,
            )

        # Measured here, around the pool call, so the OCR processes never touch a registry
        # (README, "Metrics": one port per worker, served by its main process).
        ocr_seconds = metrics.OCR_SECONDS.labels(engine=settings.ocr_engine)

        async def recognize(
            image_base64: str,
            tables: bool = False,
            task: str = DEFAULT_TASK,
            boxes: list[dict[str, Any]] | None = None,
        ) -> OcrOutput:
            started = time.perf_counter()
            if task != DEFAULT_TASK:
                output = await pool.run(
                    region_task_page, task, image_base64, boxes, timeout=settings.ocr_page_timeout_s
                )
            else:
                output = await pool.run(
                    recognize_page, image_base64, tables, timeout=settings.ocr_page_timeout_s
                )
            ocr_seconds.observe(time.perf_counter() - started)
            return output

        metrics_server = await serve_metrics(
            settings.metrics_host,
            settings.worker_metrics_port,
            span=settings.worker_metrics_port_span,
        )

        # The engines load while the worker connects; it consumes once they are loaded.
        warming = asyncio.ensure_future(warm_pool())
        worker = OcrWorker(settings, recognize, prefetch=settings.ocr_processes, warm=warming)
        try:
            await worker.run(stop, abandon)
        except Exception as exc:
            log.error("worker failed: %s: %s", type(exc).__name__, exc)
            return 1
        finally:
            warming.cancel()
            if metrics_server is not None:
                metrics_server.close()
        if warming.done() and not warming.cancelled() and warming.exception() is not None:
            log.error("%s", warming.exception())
            return 1
        return 0
    finally:
        pool.shutdown()

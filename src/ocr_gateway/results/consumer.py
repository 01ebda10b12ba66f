"""The results consumer that runs in the app's lifespan: ack only after the DB commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.messaging.amqp import Broker, declare_queue
from ocr_gateway.messaging.contracts import ResultMessage
from ocr_gateway.monitor.throughput import ThroughputRecorder
from ocr_gateway.results.service import AfterResult, ResultOutcome, store_result

log = logging.getLogger(__name__)

RETRY_DELAY_S = 1.0


class ResultsConsumer:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        broker: Broker,
        *,
        after_result: AfterResult | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broker = broker
        # What a result does to a detect-first job, in the result's own transaction.
        self.after_result = after_result
        self.handled = 0
        # Pages per worker and minute, for the monitoring page.
        self.throughput = ThroughputRecorder(sessions)

    async def run(self) -> None:
        """Consume forever; reconnect after any broker failure."""
        recording = asyncio.create_task(self.throughput.run())
        try:
            await self._consume()
        finally:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording

    async def _consume(self) -> None:
        while True:
            try:
                channel = await self.broker.new_channel(self.settings.results_prefetch)
                queue = await declare_queue(channel, self.settings.results_queue)
                log.info("results consumer listening queue=%s", self.settings.results_queue)
                async with queue.iterator() as messages:
                    async for message in messages:
                        await self.handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("results consumer interrupted, reconnecting: %s", exc)
                await asyncio.sleep(RETRY_DELAY_S)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            result = ResultMessage.model_validate_json(message.body)
        except ValidationError as exc:
            log.error("malformed result dead-lettered: %s", exc.errors(include_url=False)[:3])
            await message.reject(requeue=False)
            return
        try:
            outcome = await store_result(self.sessions, result, after=self.after_result)
        except Exception as exc:
            # The DB is unreachable or refused the write: leave the message to the broker.
            log.warning(
                "result not stored, requeued job_id=%s page_number=%d: %s",
                result.job_id,
                result.page_number,
                exc,
            )
            await asyncio.sleep(RETRY_DELAY_S)
            await message.nack(requeue=True)
            return
        if outcome is ResultOutcome.STORED:
            self.throughput.count(result.worker, result.status)
        else:
            log.info(
                "result dropped (%s) job_id=%s page_number=%d",
                outcome,
                result.job_id,
                result.page_number,
            )
        await message.ack()
        self.handled += 1

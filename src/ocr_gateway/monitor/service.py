"""The overview behind the monitoring page: one call gathers what the page polls."""

from __future__ import annotations

import datetime as dt
import logging

from pydantic import BaseModel, Field

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.messaging.amqp import Broker
from ocr_gateway.monitor import repository as repo

log = logging.getLogger(__name__)

THROUGHPUT_WINDOW = dt.timedelta(hours=1)
# Workers' rates are their pages over this many recent minutes (the current one included).
RATE_MINUTES = 5


class QueueState(BaseModel):
    name: str
    ready: int | None = Field(description="messages ready in the queue; null if the broker is down")
    consumers: int | None = Field(description="consumers attached (workers on the pages queue)")


class DispatchOverview(BaseModel):
    state: str = Field(description="`running` when pages are being fed, else `stopped`")
    mode: str = Field(description="DISPATCH_MODE: `manual` or `auto`")
    stop_in_force: bool
    open_starts: int
    pages_per_second: float | None = Field(description="the rate limit; null: none")


class MinuteCount(BaseModel):
    minute: dt.datetime
    pages: int


class WorkerRate(BaseModel):
    worker: str = Field(description="`hostname:pid` from its results; `unnamed`: older workers")
    done_pages: int = Field(description="pages answered done over the last 5 minutes")
    failed_pages: int
    pages_per_minute: float = Field(description="done and failed over the last 5 minutes, / 5")
    last_minute: dt.datetime = Field(description="the last minute it answered in")


class Overview(BaseModel):
    dispatch: DispatchOverview
    pages_queue: QueueState
    results_queue: QueueState
    pages_by_status: dict[str, int]
    workers: list[WorkerRate] = Field(
        description="workers that answered over the last 5 minutes, with their rates"
    )
    throughput: list[MinuteCount] = Field(
        description="pages recognised per minute over the last hour, oldest first, every minute"
    )
    pages_per_minute: float = Field(description="mean over the last 5 minutes")


class OverviewService:
    def __init__(self, settings: Settings, sessions: SessionFactory, broker: Broker) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broker = broker

    async def _queue(self, name: str) -> QueueState:
        try:
            ready, consumers = await self.broker.queue_counts(name)
        except Exception as exc:  # the page still shows the rest while the broker is away
            log.warning("overview: queue %s not readable: %s", name, exc)
            return QueueState(name=name, ready=None, consumers=None)
        return QueueState(name=name, ready=ready, consumers=consumers)

    async def overview(self) -> Overview:
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        first = now - THROUGHPUT_WINDOW + dt.timedelta(minutes=1)
        async with self.sessions() as session:
            stopped, open_starts, rate = await repo.dispatch_state(session)
            counts = await repo.pages_by_status(session)
            per_minute = dict(await repo.done_per_minute(session, first))
            recent = await repo.worker_rates(session, now - dt.timedelta(minutes=RATE_MINUTES - 1))
        running = open_starts > 0 or (self.settings.dispatch_mode == "auto" and not stopped)
        minutes = [first + dt.timedelta(minutes=i) for i in range(60)]
        series = [MinuteCount(minute=m, pages=per_minute.get(m, 0)) for m in minutes]
        return Overview(
            dispatch=DispatchOverview(
                state="running" if running else "stopped",
                mode=self.settings.dispatch_mode,
                stop_in_force=stopped,
                open_starts=open_starts,
                pages_per_second=rate,
            ),
            pages_queue=await self._queue(self.settings.pages_queue),
            results_queue=await self._queue(self.settings.results_queue),
            pages_by_status=counts,
            workers=[
                WorkerRate(
                    worker=worker,
                    done_pages=done,
                    failed_pages=failed,
                    pages_per_minute=(done + failed) / RATE_MINUTES,
                    last_minute=last,
                )
                for worker, done, failed, last in recent
            ],
            throughput=series,
            pages_per_minute=sum(c.pages for c in series[-5:]) / 5,
        )

"""How much work each section does (`Plan`), and one row of the results table (`Row`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.harness.common import TIMES


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each section does; `--quick` shrinks everything to a few pages."""

    quick: bool
    runs: int
    geotopo_pages: int | None  # None: the whole sample
    generated_pages: int
    peer_pages: int  # pages pdftoppm renders per run, in blocks spread over the document
    publish_pages: int
    publish_runs: int
    pika_messages: int
    upload_clients: int
    uploads_per_client: int
    idle_uploads: int
    admin_pages: int
    idle_sample_s: float
    flow_pages: int
    flow_high_water: int | None  # None: the service's default
    flow_rate: float  # messages/s the slow consumer takes
    scale_jobs: int
    scale_small_jobs: int
    scale_pages_per_job: int
    latency_samples: int
    event_subscribers: int
    event_jobs: int
    event_results: int
    event_rate: float  # results/s arriving while subscribers follow
    webhooks: int  # deliveries sent to a receiver that fails 30% of the time
    tenant_backlog: int  # tenant A's pages publishing when tenant B submits
    sync_dpi: int  # of the one page sent as an image
    sync_calls: int  # one image at a time: /image-sync, the engine and Celery, each
    sync_clients: int  # concurrent clients of the throughput runs
    sync_images: int  # images each throughput run OCRs
    sync_backlog: int  # batch pages in the pages queue while a sync image is sent
    sync_priority_calls: int  # sync calls measured over that backlog


def make_plan(quick: bool, runs: int | None) -> Plan:
    if quick:
        return Plan(
            quick=True,
            runs=runs or 1,
            geotopo_pages=8,
            generated_pages=16,
            peer_pages=4,
            publish_pages=60,
            publish_runs=runs or 1,
            pika_messages=30,
            upload_clients=4,
            uploads_per_client=2,
            idle_uploads=2,
            # Enough that publishing lasts a few seconds, so a stop lands mid-way even here.
            admin_pages=2000,
            idle_sample_s=1.0,
            flow_pages=150,
            flow_high_water=30,
            flow_rate=100.0,
            scale_jobs=20,
            scale_small_jobs=2,
            scale_pages_per_job=10,
            latency_samples=5,
            event_subscribers=40,
            event_jobs=2,
            event_results=80,
            event_rate=100.0,
            webhooks=500,
            tenant_backlog=2000,
            # A quarter of the pixels: the smoke run's OCR calls take a fraction of a second.
            sync_dpi=100,
            sync_calls=1,
            sync_clients=2,
            sync_images=2,
            sync_backlog=20,
            sync_priority_calls=1,
        )
    return Plan(
        quick=False,
        runs=runs or 3,
        geotopo_pages=None,
        generated_pages=1000,
        peer_pages=16,
        publish_pages=3000,
        # Broker throughput on a shared 2-core machine swings by 30% run to run; five pairs
        # give a steadier median than three.
        publish_runs=runs or 5,
        pika_messages=1000,
        upload_clients=16,
        uploads_per_client=6,
        idle_uploads=5,
        admin_pages=10_000,
        idle_sample_s=2.0,
        flow_pages=10_000,
        flow_high_water=None,
        flow_rate=250.0,
        scale_jobs=1000,
        scale_small_jobs=10,
        scale_pages_per_job=100,
        latency_samples=20,
        event_subscribers=1000,
        event_jobs=10,
        event_results=2000,
        event_rate=200.0,
        webhooks=10_000,
        tenant_backlog=5000,
        sync_dpi=200,
        sync_calls=30,
        sync_clients=8,
        # Three images per client: most of the run has every OCR process busy.
        sync_images=24,
        sync_backlog=5000,
        # Each waits for the batch page in flight too: ten keep the section under 15 minutes.
        sync_priority_calls=10,
    )


@dataclass(slots=True)
class Row:
    key: str
    section: int
    measure: str
    compared: str
    unit: str  # "x" (ratio), "ms", "s", "MB", "n" (a count) or "pages/s"
    target_op: str | None = None  # ">=", "<", "<="
    target: float = 0.0
    values: list[float] = field(default_factory=list)
    detail: str = ""
    status: str | None = None  # "skipped: why" or "error: why"

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def met(self) -> bool | None:
        median = self.median
        if median is None or self.target_op is None:
            return None
        if self.target_op == ">=":
            return median >= self.target
        if self.target_op == "<=":
            return median <= self.target
        return median < self.target

    def fmt(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return "-"
        if self.unit == "x":
            return f"{value:.2f}{TIMES}" if value < 100 else f"{value:.0f}{TIMES}"
        if self.unit == "ms":
            return f"{value:.1f} ms"
        if self.unit == "s":
            return f"{value:.1f} s"
        if self.unit == "n":
            return f"{value:.0f}"
        if self.unit == "pages/s":
            return f"{value:.2f} pages/s"
        return f"{value:.0f} MB"

    @property
    def target_text(self) -> str:
        if self.target_op is None:
            return "(info)"
        return f"{self.target_op} {self.fmt(self.target)}"

    @property
    def met_text(self) -> str:
        if self.status:
            return self.status
        met = self.met
        if met is None:
            return "-" if self.values else "no data"
        return "met" if met else "MISSED"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def fmt_list(values: Iterable[float], digits: int = 1) -> str:
    return "/".join(f"{v:.{digits}f}" for v in values) or "-"


def rotate(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]

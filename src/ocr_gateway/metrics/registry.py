"""Every metric of the gateway, defined once, in prometheus_client's default registry.

Each process exports the ones it moves: the API the HTTP, render, result and DB/queue gauges;
the dispatcher the publishes; a worker the OCR seconds. A metric a process never touches is
still listed there, at zero, so dashboards and alerts see one schema everywhere.

Names follow Prometheus' conventions (`ocr_gateway_` prefix, `_total` counters, base units in
`_seconds`); labels are bounded: a route template, a method, a status code or word, an engine
name, never a job id, a tenant or a raw path (README, "Metrics").
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram

from ocr_gateway import __version__

# No `_created` series beside each counter and histogram: Prometheus does not need them, and
# they are a fifth of the exposition a scrape formats (bench section 16). Untyped upstream.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds from a millisecond to a minute: HTTP calls, confirms, one page's render.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds from a tenth of a second to hours: OCR of a page, a result's age after publishing.
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

BUILD_INFO = Gauge("ocr_gateway_build_info", "The gateway's version; always 1.", ["version"])
BUILD_INFO.labels(version=__version__).set(1)

HTTP_REQUESTS = Counter(
    "ocr_gateway_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "ocr_gateway_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte, by method and route template.",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)

PAGES = Gauge(
    "ocr_gateway_pages",
    "Pages by status, read from PostgreSQL at most every OCR_GATEWAY_METRICS_REFRESH_S.",
    ["status"],
)
PAGES_QUEUE_MESSAGES = Gauge(
    "ocr_gateway_pages_queue_messages",
    "Ready messages in the pages queue (passive declare), read at most every refresh.",
)
PAGES_QUEUE_CONSUMERS = Gauge(
    "ocr_gateway_pages_queue_consumers",
    "Consumers of the pages queue, that is OCR worker channels, read at most every refresh.",
)
REFRESHES = Counter(
    "ocr_gateway_metrics_refreshes_total",
    "Reads of the database and broker gauges, however many scrapes there were.",
)
REFRESHED_AT = Gauge(
    "ocr_gateway_metrics_refreshed_timestamp_seconds",
    "Unix time of the last read of the database and broker gauges.",
)

PAGES_PUBLISHED = Counter(
    "ocr_gateway_pages_published_total",
    "Pages published to the pages queue and confirmed by the broker.",
)
PUBLISH_CONFIRM = Histogram(
    "ocr_gateway_publish_confirm_seconds",
    "Time from a page's publish to the broker's confirm (or its refusal).",
    buckets=FAST_BUCKETS,
)
RENDER_SECONDS = Histogram(
    "ocr_gateway_render_seconds",
    "Render-pool seconds per page (a chunk's time shared between its pages).",
    buckets=FAST_BUCKETS,
)
RESULT_AGE = Histogram(
    "ocr_gateway_result_age_seconds",
    "Time from a page's publish (its confirm, recorded queued) to its result stored.",
    buckets=SLOW_BUCKETS,
)
RESULTS_STORED = Counter(
    "ocr_gateway_results_stored_total",
    "OCR results stored, by the page's new status (done or failed).",
    ["status"],
)
OCR_SECONDS = Histogram(
    "ocr_gateway_ocr_seconds",
    "OCR seconds per page in a worker, measured around the OCR pool call, by engine.",
    ["engine"],
    buckets=SLOW_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "ocr_gateway_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered, retry (sent again later) or failed.",
    ["outcome"],
)

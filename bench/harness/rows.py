"""Every row of the results table: what it compares and its target, by section."""

from __future__ import annotations

from bench.harness.common import LIMIT_CONCURRENCY, RESUME_TARGET_S
from bench.harness.plan import Plan, Row


def make_rows(plan: Plan, workers: int, dpi: int, gray: bool, niceness: int) -> dict[str, Row]:
    geotopo = f"GeoTopo ({plan.geotopo_pages or 117} p)"
    generated = f"generated PDF ({plan.generated_pages:,} p)"
    mode = "gray" if gray else "RGB"
    service = "service pages/s, upload until every PNG is written and recorded"
    nice = f" at nice {niceness} like the service's render workers" if niceness else ""
    bare = f"bare PyMuPDF loop, {workers} processes{nice}, {dpi} dpi {mode}, same PNGs"
    peer = f"pdftoppm -png{' -gray' if gray else ''} -r {dpi}, one process"
    clients = f"{plan.upload_clients} clients"
    rows = [
        Row("1a", 1, f"Render {geotopo}: service / bare", f"{service} vs {bare}", "x", ">=", 0.85),
        Row("1b", 1, f"Render {geotopo}: service / pdftoppm", f"{service} vs {peer}", "x", ">=", 5),
        Row(
            "1c", 1, f"Render {generated}: service / bare", f"{service} vs {bare}", "x", ">=", 0.85
        ),
        Row(
            "1d", 1, f"Render {generated}: service / pdftoppm", f"{service} vs {peer}", "x", ">=", 5
        ),
        Row(
            "2a",
            2,
            f"Publish {plan.publish_pages:,} pages: service / aio-pika",
            "msg/s, /admin/start until every page is queued in the DB, vs a bare aio-pika loop "
            f"with {LIMIT_CONCURRENCY} confirmed publishes in flight",
            "x",
            ">=",
            0.85,
        ),
        Row(
            "2b",
            2,
            "Publish: service / pika",
            "msg/s vs pika BlockingConnection with confirm_delivery(), same messages",
            "x",
            ">=",
            2,
        ),
        Row(
            "2c",
            2,
            "Publish: service / aio-pika loop that also reads and encodes",
            "msg/s vs the aio-pika loop doing the service's per-page work: read the PNG,"
            " base64, JSON",
            "x",
        ),
        Row("3a", 3, f"Upload p50, {clients}, a job rendering", "POST /ocrpdf, GeoTopo", "ms"),
        Row(
            "3b",
            3,
            f"Upload p99, {clients}, a job rendering",
            "POST /ocrpdf, GeoTopo",
            "ms",
            "<",
            100,
        ),
        Row(
            "3c",
            3,
            "Upload p50, 1 client, a job rendering / idle",
            "same upload with nothing else running; target: this bench's reading of 'rendering"
            " must never delay the answer'",
            "x",
            "<=",
            1.5,
        ),
        Row(
            "4a",
            4,
            "/admin/stop p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4b",
            4,
            "/admin/start p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4c",
            4,
            "/admin/jobs p99 while publishing",
            f"{plan.admin_pages:,} pages",
            "ms",
            "<",
            50,
        ),
        Row(
            "4d",
            4,
            "Stop then start: slowest wait for the next confirmed page",
            "time from POST /admin/start (sent right after a stop) until one more page is"
            " queued; the target is this bench's (a start publishes at once)",
            "s",
            "<",
            RESUME_TARGET_S,
        ),
        Row(
            "5a",
            5,
            "API process RSS: peak publishing - idle",
            f"psutil every 0.1 s, {plan.admin_pages:,} pages published",
            "MB",
            "<",
            150,
        ),
        Row(
            "5b",
            5,
            "Pool processes RSS: peak publishing - idle",
            "sum over the render and inspect pools (and their resource tracker)",
            "MB",
            "<",
            150,
        ),
        Row(
            "5c",
            5,
            "Dispatcher process RSS: peak publishing - idle",
            "the `ocr-gateway dispatch` process, which publishes pages (it holds the page bodies in"
            " flight)",
            "MB",
            "<",
            150,
        ),
    ]
    big = f"{plan.scale_jobs:,} jobs / {plan.scale_jobs * plan.scale_pages_per_job:,} pages"
    small = f"{plan.scale_small_jobs:,} jobs / {plan.scale_small_jobs * plan.scale_pages_per_job:,}"
    rows += [
        Row("6a", 6, f"/admin/jobs p99, {big}", "first page (limit 50)", "ms", "<", 50),
        Row("6b", 6, "/admin/jobs p99: big DB / small DB", f"same call with {small} pages", "x"),
        Row(
            "6c",
            6,
            f"/admin/start p99, {big} pending",
            "start of every pending page",
            "ms",
            "<",
            50,
        ),
        Row("6d", 6, "/admin/start p99: big DB / small DB", f"same call with {small} pages", "x"),
        Row("6e", 6, f"/admin/jobs keyset walk, {big}", "every open job, 50 per request", "ms"),
        Row(
            "7a",
            7,
            "Flow control: max ready depth / high-water",
            f"start of {plan.flow_pages:,} pages, consumer taking {plan.flow_rate:.0f} msg/s",
            "x",
            "<=",
            1.1,
        ),
        Row("7b", 7, "Flow control: pages published / started", "every page queued", "x", ">=", 1),
        Row("7c", 7, "Broker RSS: peak during the start - before", "beam.smp, psutil", "MB"),
        *event_rows(plan),
    ]
    return {row.key: row for row in rows}


SECTION_ROWS = {
    1: ("1a", "1b", "1c", "1d"),
    2: ("2a", "2b", "2c"),
    3: ("3a", "3b", "3c"),
    4: ("4a", "4b", "4c", "4d", "5a", "5b", "5c"),
    6: ("6a", "6b", "6c", "6d", "6e"),
    7: ("7a", "7b", "7c"),
    8: ("8a", "8b", "8c", "8d", "8e", "8f"),
    9: ("9a", "9b", "9c", "9d", "9e"),  # rows made by bench.sections.exports
    10: ("10a", "10b", "10c", "10d", "10e"),  # rows made by bench.sections.tenants
    11: ("11a", "11b", "11c", "11d", "11e", "11f", "11g", "11h"),  # by bench.sections.tasks
    12: ("12a", "12e", "12b", "12c", "12d"),  # rows made by bench.sections.thumbnails
    13: ("13a", "13b", "13c"),  # rows made by bench.sections.text_layer
    14: ("14a", "14b", "14c", "14d", "14e", "14f", "14g"),  # by bench.sections.tables
    15: ("15a", "15b", "15c", "15d"),  # rows made by bench.sections.convert
    16: ("16a", "16f", "16b", "16c", "16d", "16e"),  # rows made by bench.sections.metrics
    17: ("17a", "17b", "17c", "17d"),  # rows made by bench.sections.message_images
    18: ("18a", "18b", "18c", "18d"),  # rows made by bench.sections.regions
    19: ("19a", "19b"),  # rows made by bench.sections.storage
}


def event_rows(plan: Plan) -> list[Row]:
    fan = (
        f"{plan.event_subscribers} SSE subscribers over {plan.event_jobs} jobs,"
        f" {plan.event_results} results at {plan.event_rate:g}/s"
    )
    latency = "event insert (in the result's transaction) to receipt"
    return [
        Row("8a", 8, "Event latency p50, one API process", f"{fan}; {latency}", "ms"),
        Row("8b", 8, "Event latency p99, one API process", f"{fan}; {latency}", "ms", "<", 250),
        Row("8c", 8, "Events lost or out of order, one API process", fan, "n", "<=", 0),
        Row("8d", 8, "Event latency p99, two API processes", f"{fan}, split", "ms", "<", 250),
        Row("8e", 8, "Events lost or out of order, two API processes", fan, "n", "<=", 0),
        Row(
            "8f",
            8,
            "GET /jobs/{id} p99 while uploads and publishing run",
            "GeoTopo uploads back to back, 10,000 pages publishing",
            "ms",
            "<",
            50,
        ),
    ]

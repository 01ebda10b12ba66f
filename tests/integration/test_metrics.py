"""/metrics of the API, the dispatcher and a worker after a known flow, scraped over real HTTP.

The gateway runs as `ocr-gateway run` (API and dispatcher in their own processes, fresh
registries), so every counter starts at zero and must have moved by exactly what the flow did:
a real sample uploaded and rendered, its pages published by the dispatcher, results stored.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from prometheus_client import REGISTRY

from ocr_gateway import __version__
from ocr_gateway.components import Components
from tests.support.documents import blank_pdf, sample
from tests.support.gateway import drain, isolated_gateway
from tests.support.http import upload, wait_for_job, wait_rendered
from tests.support.launched import Gateway, service_env
from tests.support.metrics import Samples, scrape, value
from tests.support.net import free_port
from tests.support.receiver import Receiver
from tests.support.results import done, send_result
from tests.support.waiting import wait_until
from tests.support.worker import LogLineMissing, worker_process

ADMIN_KEY = "metrics-test-operator-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PAGES = 4
SOURCE = "pdflatex-4-pages.pdf"


def _label_values(samples: Samples) -> set[str]:
    return {v for (_, labels) in samples for (_, v) in labels}


async def test_metrics_after_a_known_flow(tmp_path: Path, spawned: list[Gateway]) -> None:
    dispatch_port = free_port()
    extra = {
        "OCR_GATEWAY_ADMIN_API_KEY": ADMIN_KEY,
        "OCR_GATEWAY_DISPATCH_METRICS_PORT": str(dispatch_port),
        "OCR_GATEWAY_METRICS_REFRESH_S": "1",
    }
    async with service_env(tmp_path, **extra) as (settings, env):
        gateway = Gateway(env, tmp_path / "gateway.log")
        spawned.append(gateway)
        await gateway.start()
        api_metrics = f"http://127.0.0.1:{gateway.port}/metrics"
        dispatch_metrics = f"http://127.0.0.1:{dispatch_port}/metrics"
        async with httpx.AsyncClient(base_url=gateway.url, headers=ADMIN, timeout=30) as client:
            # Without the operator's key: refused, with the JSON error of every admin route.
            async with httpx.AsyncClient() as anonymous:
                refused = await anonymous.get(api_metrics)
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"

            job_id = (await upload(client, sample(SOURCE)))["job_id"]
            await wait_rendered(client, job_id)
            assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
            await wait_for_job(
                client,
                job_id,
                lambda job: (
                    all(page["status"] == "queued" for page in job["pages"])
                    and len(job["pages"]) == PAGES
                ),
                timeout=30,
            )
            # Play the worker: take the pages off the queue, post a result for each.
            connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
            async with connection:
                channel: AbstractChannel = await connection.channel()
                bodies = await drain(channel, settings.pages_queue, idle=0.5)
                numbers = sorted(orjson.loads(body)["page_number"] for body in bodies)
                assert numbers == list(range(1, PAGES + 1))
                for number in numbers:
                    await send_result(channel, settings.results_queue, done(job_id, number))
            await wait_for_job(client, job_id, lambda job: job["status"] == "completed")

            api = await scrape(api_metrics, **ADMIN)
            assert value(api, "ocr_gateway_build_info", version=__version__) == 1
            upload_route = {"method": "POST", "route": "/api/v1/ocrpdf", "status": "202"}
            assert value(api, "ocr_gateway_http_requests_total", **upload_route) == 1
            start_route = {"method": "POST", "route": "/api/v1/admin/start/{job_id}"}
            assert value(api, "ocr_gateway_http_requests_total", **start_route, status="202") == 1
            assert value(api, "ocr_gateway_http_request_duration_seconds_count", **start_route) == 1
            # The refused scrape is counted under the route's template as well.
            assert (
                value(
                    api,
                    "ocr_gateway_http_requests_total",
                    method="GET",
                    route="/metrics",
                    status="401",
                )
                == 1
            )
            assert job_id not in " ".join(_label_values(api)), "a job id became a label"
            assert value(api, "ocr_gateway_render_seconds_count") == PAGES
            assert value(api, "ocr_gateway_render_seconds_sum") > 0
            assert value(api, "ocr_gateway_results_stored_total", status="done") == PAGES
            assert value(api, "ocr_gateway_result_age_seconds_count") == PAGES
            assert value(api, "ocr_gateway_result_age_seconds_sum") > 0
            assert value(api, "ocr_gateway_pages_queue_messages") == 0
            assert value(api, "ocr_gateway_pages_queue_consumers") == 0

            # The DB gauge comes to the new counts within the refresh interval.
            latest: Samples = {}

            async def all_done() -> bool:
                nonlocal latest
                latest = await scrape(api_metrics, **ADMIN)
                return value(latest, "ocr_gateway_pages", status="done") == PAGES

            await wait_until(all_done, timeout=10, interval=0.3)
            assert value(latest, "ocr_gateway_pages", status="pending") == 0

            # Scrapes within the interval are answered from the last read: one read at most.
            before = value(latest, "ocr_gateway_metrics_refreshes_total")
            burst = await asyncio.gather(*(scrape(api_metrics, **ADMIN) for _ in range(8)))
            reads = {value(s, "ocr_gateway_metrics_refreshes_total") for s in burst}
            assert max(reads) - before <= 1, reads
            stamps = {value(s, "ocr_gateway_metrics_refreshed_timestamp_seconds") for s in burst}
            assert len(stamps) <= 2, stamps
            await asyncio.sleep(1.2)
            after = await scrape(api_metrics, **ADMIN)
            assert value(after, "ocr_gateway_metrics_refreshes_total") == max(reads) + 1

            dispatcher = await scrape(dispatch_metrics)
            assert value(dispatcher, "ocr_gateway_pages_published_total") == PAGES
            assert value(dispatcher, "ocr_gateway_publish_confirm_seconds_count") == PAGES
            assert value(dispatcher, "ocr_gateway_build_info", version=__version__) == 1
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"http://127.0.0.1:{dispatch_port}/x")).status_code == 404


needs_ocr = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra",
)


@needs_ocr
async def test_a_worker_serves_its_ocr_seconds_by_engine(
    client: httpx.AsyncClient, services: Components
) -> None:
    port = free_port()
    job_id = (await upload(client, sample("002-trivial-libre-office-writer.pdf")))["job_id"]
    try:
        async with worker_process(
            services.settings, grace=None, OCR_GATEWAY_WORKER_METRICS_PORT=str(port)
        ) as worker:
            await worker.wait_for(f"metrics served at http://127.0.0.1:{port}/metrics")
            idle = await scrape(f"http://127.0.0.1:{port}/metrics")
            assert value(idle, "ocr_gateway_ocr_seconds_count", engine="rapidocr") == 0
            await wait_rendered(client, job_id)
            assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
            job: dict[str, Any] = await wait_for_job(
                client, job_id, lambda job: job["status"] in ("completed", "failed"), 90, 0.2
            )
            assert job["status"] == "completed", job
            busy = await scrape(f"http://127.0.0.1:{port}/metrics")
    except LogLineMissing as missing:
        pytest.fail(str(missing))
    assert value(busy, "ocr_gateway_ocr_seconds_count", engine="rapidocr") == 1
    assert value(busy, "ocr_gateway_ocr_seconds_sum", engine="rapidocr") > 0.01
    assert value(busy, "ocr_gateway_build_info", version=__version__) == 1


def _deliveries(outcome: str) -> float:
    got = REGISTRY.get_sample_value("ocr_gateway_webhook_deliveries_total", {"outcome": outcome})
    return got or 0.0


async def test_webhook_deliveries_are_counted_by_outcome(tmp_path: Path) -> None:
    """A receiver that answers 503 then 200 to one job's delivery, and 410 to the next job's:
    one retry, one delivered, one failed. In-process, so the counters are read from this
    process's registry, before and after."""
    before = {outcome: _deliveries(outcome) for outcome in ("retry", "delivered", "failed")}

    async def moved(outcome: str) -> bool:
        return _deliveries(outcome) == before[outcome] + 1

    async with (
        Receiver() as receiver,
        isolated_gateway(
            tmp_path,
            webhook_allow_hosts="127.0.0.1",
            webhook_retry_base_s=0.05,
            webhook_max_attempts=5,
            webhook_timeout_s=2.0,
        ) as gateway,
    ):
        receiver.script(503, 200, 410)
        connection = await aio_pika.connect(gateway.settings.rabbitmq_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            for outcome in ("delivered", "failed"):
                response = await gateway.client.post(
                    "/ocrpdf",
                    files={"file": ("doc.pdf", blank_pdf(1))},
                    data={"callback_url": receiver.url},
                )
                assert response.status_code == 202, response.text
                job_id = str(response.json()["job_id"])
                await wait_rendered(gateway.client, job_id)
                await send_result(channel, gateway.settings.results_queue, done(job_id, 1))
                await wait_until(functools.partial(moved, outcome), timeout=30)
    assert _deliveries("retry") == before["retry"] + 1
    assert _deliveries("delivered") == before["delivered"] + 1
    assert _deliveries("failed") == before["failed"] + 1

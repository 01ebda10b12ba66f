"""The metrics' pure parts: the route template label, the asyncio /metrics server, the names."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY

from ocr_gateway import __version__
from ocr_gateway.metrics import registry
from ocr_gateway.metrics.http import RequestMetrics
from ocr_gateway.metrics.server import serve_metrics
from tests.support.metrics import parse_samples, value
from tests.support.net import free_port


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/things")

    @router.get("/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app.include_router(router, prefix="/v9")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(RequestMetrics)
    return app


def _requests(route: str, status: str, method: str = "GET") -> float:
    got = REGISTRY.get_sample_value(
        "ocr_gateway_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return got or 0.0


async def test_requests_are_labelled_by_route_template_never_the_raw_path() -> None:
    before = _requests("/v9/things/{thing_id}", "200")
    unmatched = _requests("unmatched", "404")
    failed = _requests("/boom", "500")
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for thing in ("a1", "b2", "c3"):
            assert (await http.get(f"/v9/things/{thing}")).status_code == 200
        assert (await http.get("/nowhere/123")).status_code == 404
        assert (await http.get("/boom")).status_code == 500
    assert _requests("/v9/things/{thing_id}", "200") == before + 3
    assert _requests("unmatched", "404") == unmatched + 1
    assert _requests("/boom", "500") == failed + 1
    exposition = parse_samples(registry_text())
    routes = {dict(labels).get("route") for (_, labels) in exposition}
    assert not {"/v9/things/a1", "/v9/things/b2", "/nowhere/123"} & routes
    count = value(
        exposition,
        "ocr_gateway_http_request_duration_seconds_count",
        method="GET",
        route="/v9/things/{thing_id}",
    )
    assert count >= 3


def registry_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest().decode()


def test_every_metric_follows_the_naming_conventions() -> None:
    families = [family for family in REGISTRY.collect() if family.name.startswith("ocr_gateway_")]
    names = {family.name for family in families}
    expected = {
        "ocr_gateway_build_info",
        "ocr_gateway_http_requests",
        "ocr_gateway_http_request_duration_seconds",
        "ocr_gateway_pages",
        "ocr_gateway_pages_published",
        "ocr_gateway_publish_confirm_seconds",
        "ocr_gateway_render_seconds",
        "ocr_gateway_result_age_seconds",
        "ocr_gateway_pages_queue_messages",
        "ocr_gateway_pages_queue_consumers",
        "ocr_gateway_ocr_seconds",
        "ocr_gateway_webhook_deliveries",
        "ocr_gateway_results_stored",
        "ocr_gateway_metrics_refreshes",
        "ocr_gateway_metrics_refreshed_timestamp_seconds",
    }
    assert expected <= names, expected - names
    for family in families:
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            assert "job_id" not in sample.labels and "tenant" not in sample.labels
    assert REGISTRY.get_sample_value("ocr_gateway_build_info", {"version": __version__}) == 1
    assert registry.WEBHOOK_DELIVERIES._labelnames == ("outcome",)


async def _get(port: int, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"http://127.0.0.1:{port}{path}")


async def test_the_metrics_server_answers_metrics_and_refuses_anything_else() -> None:
    port = free_port()
    server = await serve_metrics("127.0.0.1", port)
    assert server is not None
    try:
        registry.PAGES_PUBLISHED.inc(0)
        response = await _get(port, "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = parse_samples(response.text)
        assert value(samples, "ocr_gateway_build_info", version=__version__) == 1
        assert ("ocr_gateway_pages_published_total", frozenset()) in samples
        missing = await _get(port, "/elsewhere")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        # A client that sends half a request and goes away does not stop the server.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metr")
        writer.close()
        assert (await _get(port, "/metrics?x=1")).status_code == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_a_taken_port_moves_to_the_next_of_the_span_and_zero_is_off() -> None:
    assert await serve_metrics("127.0.0.1", 0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert await serve_metrics("127.0.0.1", port) is None  # span 1: nothing else to try
        server = await serve_metrics("127.0.0.1", port, span=8)
        if server is None:
            pytest.skip("the next ports happened to be taken too")
        try:
            bound = server.sockets[0].getsockname()[1]
            assert port < bound < port + 8
            assert (await _get(bound, "/metrics")).status_code == 200
        finally:
            server.close()
            await server.wait_closed()

"""Health names PostgreSQL and RabbitMQ and reports each as reachable."""

from __future__ import annotations

import httpx


async def test_health_reports_database_and_broker(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["rabbitmq"]["ok"] is True
    assert "ready messages" in body["rabbitmq"]["detail"]


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_health_reports_the_artefact_store(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health")).json()
    assert body["storage"]["ok"] is True
    assert body["storage"]["detail"].endswith("reachable")

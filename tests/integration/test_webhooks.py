"""Webhooks end to end, to a real HTTP receiver on 127.0.0.1: what is sent when a job ends (or
a page, when asked), the signature, retries and giving up, the operator's list and redeliver,
the SSRF refusals at submit, the tenant's default callback, delivery after a kill -9, and two
API processes sharing the outbox without sending anything twice.

Most tests run on their own gateway (`hooked`) whose allow list lets callbacks reach
127.0.0.1, with retries 50 ms apart; the SSRF tests use the suite's gateway, which allows
nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from ocr_gateway.components import Components
from ocr_gateway.db.engine import build_engine, build_session_factory
from ocr_gateway.events import repository as events_repo
from ocr_gateway.events.types import EventType
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage.cleanup import delete_all_job_artefacts
from ocr_gateway.webhooks import repository as webhooks_repo
from tests.support.documents import blank_pdf
from tests.support.gateway import Gateway, isolated_gateway, purge_queues, seed_pages
from tests.support.http import wait_rendered
from tests.support.launched import Gateway as Launched
from tests.support.launched import service_env
from tests.support.receiver import Answer, Received, Receiver
from tests.support.replica import replica
from tests.support.results import done, send_result
from tests.support.waiting import wait_until

HOOKED: dict[str, Any] = {
    "webhook_allow_hosts": "127.0.0.1",
    "webhook_retry_base_s": 0.05,
    "webhook_max_attempts": 5,
    "webhook_timeout_s": 2.0,
}
QUIET_S = 0.5  # how long "nothing more arrives" is watched for


@pytest.fixture(scope="module")
async def hooked(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    async with isolated_gateway(tmp_path_factory.mktemp("hooked"), **HOOKED) as gateway:
        yield gateway


@pytest.fixture
async def gw(hooked: Gateway) -> AsyncIterator[Gateway]:
    """The webhook gateway, emptied after each test."""
    yield hooked
    services = hooked.services
    for job_id in services.renderer.rendering_job_ids:
        await services.renderer.cancel_render(job_id)
    async with services.sessions.begin() as session:
        await session.execute(
            text("TRUNCATE jobs, pages, job_events, webhook_deliveries, api_keys CASCADE")
        )
        await session.execute(text("DELETE FROM tenants WHERE name <> 'default'"))
        await session.execute(
            text("UPDATE tenants SET callback_url = NULL, callback_events = 'job'")
        )
    await delete_all_job_artefacts(services.store)
    await purge_queues(hooked.settings)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as started:
        yield started


# ------------------------------------------------------------------ helpers


async def _upload(
    client: httpx.AsyncClient,
    pages: int,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    response = await client.post(
        "/ocrpdf",
        files={"file": ("doc.pdf", blank_pdf(pages))},
        data=fields or {},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    job_id = str(response.json()["job_id"])
    await wait_rendered(client, job_id)
    return job_id


async def _complete(gw: Gateway, channel: AbstractChannel, job_id: str, pages: int) -> None:
    for number in range(1, pages + 1):
        await send_result(channel, gw.settings.results_queue, done(job_id, number))


async def _deliveries(gw: Gateway, **query: str) -> list[dict[str, Any]]:
    response = await gw.client.get("/admin/webhooks", params={"limit": "500", **query})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _wait_status(gw: Gateway, status: str, count: int = 1) -> list[dict[str, Any]]:
    async def reached() -> bool:
        return len(await _deliveries(gw, status=status)) >= count

    await wait_until(reached, timeout=30, what=f"{count} {status} deliveries")
    return await _deliveries(gw, status=status)


async def _secret(gw: Gateway, tenant: str = "default") -> str:
    async with gw.services.sessions() as session:
        secret = await session.scalar(
            text("SELECT webhook_secret FROM tenants WHERE name = :t"), {"t": tenant}
        )
    assert isinstance(secret, str)
    return secret


def _verified(request: Received, secret: str) -> Any:
    """The body, once the standardwebhooks package has verified the signature."""
    return Webhook(secret).verify(request.body, request.headers)


async def _quiet(receiver: Receiver, expected: int) -> None:
    """Nothing more arrives for a while."""
    await asyncio.sleep(QUIET_S)
    assert len(receiver.received) == expected, receiver.ids()


# ------------------------------------------------------------------ what is sent


async def test_a_completed_job_sends_one_signed_delivery(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    job_id = await _upload(gw.client, 2, fields={"callback_url": receiver.url})
    sent_at = time.time()
    await _complete(gw, channel, job_id, 2)
    [request] = await receiver.wait_for(1)
    latency = time.time() - sent_at
    await _quiet(receiver, 1)

    assert (request.method, request.path) == ("POST", "/hooks")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert request.webhook_id.startswith("msg_") and len(request.webhook_id) == 36
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
    assert request.headers["webhook-signature"].startswith("v1,")
    body = _verified(request, await _secret(gw))
    assert list(body) == ["type", "timestamp", "data"]
    assert body["type"] == "job.completed"
    stamp = dt.datetime.fromisoformat(body["timestamp"])
    assert body["timestamp"].endswith("Z") and stamp.utcoffset() == dt.timedelta(0)
    assert abs(stamp.timestamp() - time.time()) < 30
    assert body["data"] == {
        "job_id": job_id,
        "tenant": "default",
        "status": "completed",
        "completed_pages": 2,
        "failed_pages": 0,
        "total_page_number": 2,
    }
    [row] = await _deliveries(gw, job_id=job_id)
    assert row["webhook_id"] == request.webhook_id
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
    assert (row["event_type"], row["url"], row["tenant"]) == (
        "job.completed",
        receiver.url,
        "default",
    )
    print(f"\njob completed → webhook received: {latency * 1000:.0f} ms (both results sent)")


async def test_page_events_when_asked_for(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    fields = {"callback_url": receiver.url, "callback_events": "page"}
    job_id = await _upload(gw.client, 3, fields=fields)
    await _complete(gw, channel, job_id, 3)
    requests = await receiver.wait_for(4)
    await _quiet(receiver, 4)
    secret = await _secret(gw)
    bodies = [_verified(request, secret) for request in requests]
    pages = sorted(b["data"]["page_number"] for b in bodies if b["type"] == "page.done")
    assert pages == [1, 2, 3]
    [end] = [b for b in bodies if b["type"] == "job.completed"]
    assert "page_number" not in end["data"]
    assert end["data"]["completed_pages"] == 3
    third = next(b for b in bodies if b["data"].get("page_number") == 3)
    assert set(third["data"]) == {
        "job_id",
        "tenant",
        "status",
        "completed_pages",
        "failed_pages",
        "total_page_number",
        "page_number",
    }
    assert len(set(receiver.ids())) == 4


async def test_a_cancelled_job_sends_job_cancelled(gw: Gateway, receiver: Receiver) -> None:
    job_id = await _upload(gw.client, 2, fields={"callback_url": receiver.url})
    response = await gw.client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    [request] = await receiver.wait_for(1)
    body = _verified(request, await _secret(gw))
    assert body["type"] == "job.cancelled"
    assert body["data"]["status"] == "cancelled"
    assert body["data"]["job_id"] == job_id
    await _quiet(receiver, 1)


async def test_the_tenant_default_callback_serves_jobs_without_their_own(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    acme = {"X-Tenant-Id": "acme"}
    defaulted = await _upload(gw.client, 1, headers=acme)
    own_url = receiver.url + "?own=1"
    own = await _upload(gw.client, 1, headers=acme, fields={"callback_url": own_url})
    async with gw.services.sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE tenants SET callback_url = :url, callback_events = 'page'"
                " WHERE name = 'acme'"
            ),
            {"url": receiver.url},
        )
    await _complete(gw, channel, defaulted, 1)
    await _complete(gw, channel, own, 1)
    requests = await receiver.wait_for(3)
    await _quiet(receiver, 3)
    secret = await _secret(gw, "acme")
    seen = sorted(
        (body["data"]["job_id"] == own, request.path, body["type"])
        for request in requests
        for body in [_verified(request, secret)]
    )
    # The tenant's URL and its `page` choice for the first job; the job's own URL and its
    # own (default) `job` choice for the second.
    assert seen == [
        (False, "/hooks", "job.completed"),
        (False, "/hooks", "page.done"),
        (True, "/hooks?own=1", "job.completed"),
    ]
    assert {request.json["data"]["tenant"] for request in requests} == {"acme"}
    assert {row["tenant"] for row in await _deliveries(gw, tenant="acme")} == {"acme"}
    assert await _deliveries(gw, tenant="default") == []


# ------------------------------------------------------------------ retries and giving up


async def test_retries_on_500_429_503_then_delivered_with_the_same_id_and_body(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    receiver.script(500, Answer(429, {"Retry-After": "0"}), 503)
    job_id = await _upload(gw.client, 1, fields={"callback_url": receiver.url})
    await _complete(gw, channel, job_id, 1)
    requests = await receiver.wait_for(4)
    await _quiet(receiver, 4)
    assert len(set(receiver.ids())) == 1
    assert len({request.body for request in requests}) == 1
    secret = await _secret(gw)
    for request in requests:  # each attempt signed for its own timestamp
        _verified(request, secret)
    [row] = await _wait_status(gw, "delivered")
    assert (row["attempts"], row["last_status_code"], row["last_error"]) == (4, 200, None)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    # 50, 100, 200 ms of back-off, ±20%.
    assert all(gap >= 0.04 * 2**n for n, gap in enumerate(gaps)), gaps


async def test_a_receiver_that_is_down_gets_the_delivery_when_it_is_back(
    gw: Gateway, channel: AbstractChannel
) -> None:
    receiver = Receiver()  # not started: connections are refused
    job_id = await _upload(gw.client, 1, fields={"callback_url": receiver.url})
    await _complete(gw, channel, job_id, 1)

    async def refused_twice() -> bool:
        rows = await _deliveries(gw, job_id=job_id)
        return bool(rows) and rows[0]["attempts"] >= 2

    await wait_until(refused_twice, timeout=30)
    [row] = await _deliveries(gw, job_id=job_id)
    assert row["status"] == "pending"
    assert row["last_status_code"] is None
    assert "connect" in row["last_error"].lower(), row["last_error"]
    async with receiver:
        [request] = await receiver.wait_for(1)
        assert request.webhook_id == row["webhook_id"]
        [row] = await _wait_status(gw, "delivered")
        assert row["attempts"] >= 3


async def test_a_400_fails_at_once_is_listed_and_redelivered(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    receiver.script(Answer(400, body=b"no such hook"))
    job_id = await _upload(gw.client, 1, fields={"callback_url": receiver.url})
    await _complete(gw, channel, job_id, 1)
    [first] = await receiver.wait_for(1)
    [failed] = await _wait_status(gw, "failed")
    await _quiet(receiver, 1)
    assert failed["attempts"] == 1
    assert failed["last_status_code"] == 400
    assert failed["last_error"] == "HTTP 400: no such hook"
    assert failed["webhook_id"] == first.webhook_id
    assert await _deliveries(gw, status="pending") == []

    response = await gw.client.post(f"/admin/webhooks/{failed['id']}/redeliver")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert response.json()["attempts"] == 0
    [_, again] = await receiver.wait_for(2)
    assert again.webhook_id == first.webhook_id
    assert again.body == first.body
    [delivered] = await _wait_status(gw, "delivered")
    assert delivered["attempts"] == 1
    assert await _deliveries(gw, status="failed") == []

    missing = await gw.client.post("/admin/webhooks/999999999/redeliver")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


async def test_after_max_attempts_the_delivery_fails(
    gw: Gateway, receiver: Receiver, channel: AbstractChannel
) -> None:
    receiver.default = Answer(500, body=b"x" * 200_000)  # more than is ever read
    job_id = await _upload(gw.client, 1, fields={"callback_url": receiver.url})
    await _complete(gw, channel, job_id, 1)
    [row] = await _wait_status(gw, "failed")
    await _quiet(receiver, HOOKED["webhook_max_attempts"])
    assert row["attempts"] == HOOKED["webhook_max_attempts"]
    assert row["last_status_code"] == 500
    assert row["last_error"].startswith("HTTP 500: xxx") and len(row["last_error"]) < 400
    assert len(set(receiver.ids())) == 1


async def test_the_list_filters_and_pages(gw: Gateway, receiver: Receiver) -> None:
    jobs = await seed_pages(gw, jobs=5, pages=1)
    async with gw.services.sessions.begin() as session:
        await session.execute(text("UPDATE tenants SET callback_url = :url"), {"url": receiver.url})
        for job in jobs:
            await events_repo.record_event(session, job, EventType.JOB_CANCELLED)
    await _wait_status(gw, "delivered", 5)
    first = (await gw.client.get("/admin/webhooks", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await gw.client.get(
        "/admin/webhooks", params={"limit": 10, "cursor": first["next_cursor"]}
    )
    ids = [item["id"] for item in first["items"] + rest.json()["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert rest.json()["next_cursor"] is None
    cases: list[tuple[dict[str, str | int], int]] = [
        ({"status": "lost"}, 422),
        ({"tenant": "no spaces"}, 422),
        ({"cursor": "abc"}, 400),
        ({"limit": 0}, 422),
    ]
    for params, code in cases:
        response = await gw.client.get("/admin/webhooks", params=params)
        assert response.status_code == code, params


# ------------------------------------------------------------------ SSRF


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("ftp://example.com/hook", "http or https"),
        ("http://example.com/" + "a" * 2040, "over 2048"),
        ("http://[::1/hook", "malformed"),
        ("http:///hook", "no valid host"),
    ],
)
async def test_a_callback_url_refused_at_submit_leaves_nothing_behind(
    client: httpx.AsyncClient, services: Components, url: str, words: str
) -> None:
    assert services.settings.webhook_allow_hosts == ""
    temp_before = set(services.settings.temp_dir.iterdir())
    response = await client.post(
        "/ocrpdf", files={"file": ("doc.pdf", blank_pdf(1))}, data={"callback_url": url}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_field"
    assert words in response.json()["detail"]
    async with services.sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM jobs")) == 0
    assert set(services.settings.temp_dir.iterdir()) == temp_before


async def test_a_refused_callback_events_value_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/ocrpdf",
        files={"file": ("doc.pdf", blank_pdf(1))},
        data={"callback_url": "http://93.184.216.34/h", "callback_events": "all"},
    )
    assert response.status_code == 422


# ------------------------------------------------------------------ processes


async def test_two_api_processes_never_send_one_delivery_twice(
    gw: Gateway, receiver: Receiver
) -> None:
    count = 300
    receiver.delay_s = 0.01
    jobs = await seed_pages(gw, jobs=count, pages=1)
    async with replica(gw.settings):
        async with gw.services.sessions.begin() as session:
            await session.execute(
                text("UPDATE tenants SET callback_url = :url"), {"url": receiver.url}
            )
            # All due at once, and both senders woken by the same NOTIFY.
            for job in jobs:
                await events_repo.record_event(session, job, EventType.JOB_CANCELLED)
        started = time.perf_counter()
        await receiver.wait_for(count, timeout=60)
        elapsed = time.perf_counter() - started
        await _quiet(receiver, count)
    ids = receiver.ids()
    assert len(ids) == len(set(ids)) == count
    delivered = await _deliveries(gw, status="delivered")
    assert len(delivered) == count
    assert {row["attempts"] for row in delivered} == {1}
    assert {row["webhook_id"] for row in delivered} == set(ids)
    print(f"\n{count} deliveries by 2 processes (10 ms receiver): {count / elapsed:.0f}/s")


async def test_deliveries_due_when_the_process_is_killed_are_sent_after_a_restart(
    tmp_path: Path, spawned: list[Launched], channel: AbstractChannel
) -> None:
    count = 5
    receiver = Receiver()  # down until after the kill
    extra = {
        "OCR_GATEWAY_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "OCR_GATEWAY_WEBHOOK_RETRY_BASE_S": "0.2",
        "OCR_GATEWAY_WEBHOOK_MAX_ATTEMPTS": "50",
        "OCR_GATEWAY_WEBHOOK_TIMEOUT_S": "2",
    }
    async with service_env(tmp_path, **extra) as (settings, env):
        engine = build_engine(settings, pool_size=2)
        try:
            sessions = build_session_factory(engine)
            jobs = await seed_pages((Storage(settings), sessions), jobs=count, pages=1)
            async with sessions.begin() as session:
                await session.execute(
                    text("UPDATE tenants SET callback_url = :url"), {"url": receiver.url}
                )
            first = Launched(env, tmp_path / "first.log")
            spawned.append(first)
            await first.start()
            for job in jobs:
                await send_result(channel, settings.results_queue, done(str(job), 1))

            async def tried() -> int:
                async with sessions() as session:
                    value = await session.scalar(
                        text(
                            "SELECT count(*) FROM webhook_deliveries"
                            " WHERE attempts >= 2 AND status = 'pending'"
                        )
                    )
                return int(value or 0)

            async def all_tried() -> bool:
                return await tried() == count

            await wait_until(all_tried, timeout=60, what="every delivery tried and refused")
            await first.kill()
            async with sessions() as session:
                before = {
                    row.webhook_id: row.status
                    for row in await session.execute(
                        text("SELECT webhook_id, status FROM webhook_deliveries")
                    )
                }
            assert set(before.values()) == {"pending"} and len(before) == count

            async with receiver:
                second = Launched(env, tmp_path / "second.log")
                spawned.append(second)
                restarted = time.perf_counter()
                await second.start()
                await receiver.wait_for(count, timeout=60)
                elapsed = time.perf_counter() - restarted
                await _quiet(receiver, count)
            assert sorted(receiver.ids()) == sorted(before)

            async def all_delivered() -> bool:
                async with sessions() as session:
                    value = await session.scalar(
                        text("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
                    )
                return bool(value == count)

            await wait_until(all_delivered, timeout=10)
            print(f"\nafter kill -9: {count} deliveries sent {elapsed:.1f} s after the restart")
        finally:
            await engine.dispose()


async def test_a_claim_whose_sender_died_is_sent_when_its_lease_ends(
    gw: Gateway, receiver: Receiver
) -> None:
    [job] = await seed_pages(gw, jobs=1, pages=1)
    lease_s = 0.8
    async with gw.services.sessions.begin() as session:
        await session.execute(text("UPDATE tenants SET callback_url = :url"), {"url": receiver.url})
        await events_repo.record_event(session, job, EventType.JOB_CANCELLED)
        # A sender claims it in the same transaction, then dies without an outcome.
        [claimed] = await webhooks_repo.claim_due(session, limit=10, lease_s=lease_s)
    committed = time.perf_counter()
    [request] = await receiver.wait_for(1, timeout=10)
    assert request.at - committed >= lease_s * 0.9
    assert request.webhook_id == claimed.webhook_id
    [row] = await _wait_status(gw, "delivered")
    assert row["attempts"] == 2  # the lost attempt counts

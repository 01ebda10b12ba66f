"""Keeping images out of the broker (`MESSAGE_IMAGES=url`): a job flows end to end with a real
worker on local disk (the gateway's signed URL) and on S3 (a presigned URL), the messages on
the broker carry a URL and no image, the signed route refuses a tampered or expired signature,
a missing image fails its page, the worker tells a refusal from an outage, and `inline` stays
byte for byte what it was."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pymupdf
from aio_pika.abc import AbstractChannel

from ocr_gateway.components import Components
from ocr_gateway.dispatch.page_urls import PageUrlSigner, expiry
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.messaging.amqp import dead_letter_queue
from ocr_gateway.messaging.contracts import ResultMessage, encode_page_message
from ocr_gateway.rendering import repository as render_repo
from ocr_gateway.storage.keys import page_key
from ocr_gateway.worker.consumer import OcrWorker
from ocr_gateway.worker.layout import OcrOutput
from tests.support.documents import sample
from tests.support.gateway import Gateway, drain, isolated_gateway
from tests.support.http import job_detail, upload, wait_for_job, wait_rendered
from tests.support.net import free_port
from tests.support.s3 import S3Server
from tests.support.tcp import served
from tests.support.waiting import wait_until
from tests.support.worker import worker_process

SECRET = "a-shared-secret-of-the-api-and-dispatchers-0123456789"
LOREM = "002-trivial-libre-office-writer.pdf"
# A page message by URL is a few hundred bytes; by value the smallest page is kilobytes.
MAX_URL_BODY = 2048


@contextlib.asynccontextmanager
async def url_gateway(tmp_path: Path, **overrides: Any) -> AsyncIterator[Gateway]:
    """A gateway with `MESSAGE_IMAGES=url`, served over TCP where its URLs say it is."""
    port = free_port()
    async with (
        isolated_gateway(
            tmp_path,
            message_images="url",
            message_image_url_secret=SECRET,
            public_url=f"http://127.0.0.1:{port}",
            **overrides,
        ) as gateway,
        served(gateway.app, port=port),
    ):
        yield gateway


async def settled(client: httpx.AsyncClient, job_id: str, timeout: float = 120) -> dict[str, Any]:
    return await wait_for_job(
        client, job_id, lambda job: job["status"] in ("completed", "failed"), timeout, 0.2
    )


async def peek_page_message(channel: AbstractChannel, queue_name: str) -> bytes:
    """One message off the pages queue, looked at and given back."""
    queue = await channel.declare_queue(queue_name, passive=True)

    async def one() -> bool:
        return ((await queue.declare()).message_count or 0) > 0

    await wait_until(one, timeout=30, what="a page message")
    message = await queue.get(no_ack=False, fail=True)
    assert message is not None
    await message.nack(requeue=True)
    return message.body


def render_png(name: str, page: int = 0, dpi: int = 200) -> bytes:
    with pymupdf.open(sample(name)) as document:
        png: bytes = document[page].get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY).tobytes("png")
    return png


async def seed_stored_pages(services: Components, pngs: list[bytes]) -> uuid.UUID:
    """A rendered job whose page images are put straight into the gateway's store."""
    job_id = uuid.uuid4()
    for number, png in enumerate(pngs, start=1):
        await services.store.put_bytes(page_key(job_id, number), png, content_type="image/png")
    async with services.sessions.begin() as session:
        await jobs_repo.create_job(
            session,
            job_id=job_id,
            tenant="default",
            filename="stored.pdf",
            media_type="application/pdf",
            total_page_number=len(pngs),
            render_lease_s=60,
        )
        pages = [(n, page_key(job_id, n)) for n in range(1, len(pngs) + 1)]
        await render_repo.record_rendered_pages(session, job_id, pages, render_lease_s=60)
        await render_repo.finish_render(session, job_id)
    return job_id


# ---------------------------------------------------------------- end to end, real worker


async def test_a_job_flows_by_signed_urls_on_local_disk_with_a_real_worker(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with url_gateway(tmp_path) as gateway:
        settings, client = gateway.settings, gateway.client
        job_id = (await upload(client, sample(LOREM)))["job_id"]
        await wait_rendered(client, job_id)
        assert (await client.post(f"/admin/start/{job_id}")).status_code == 202

        body = await peek_page_message(channel, settings.pages_queue)
        message = orjson.loads(body)
        assert set(message) == {"job_id", "page_number", "image_url"}, "no image in the message"
        assert len(body) < MAX_URL_BODY and b"iVBOR" not in body  # base64 of a PNG's signature
        url = message["image_url"]
        assert url.startswith(f"{settings.gateway_url}/api/v1/page-images/{job_id}/1?expires=")
        stored = await gateway.services.store.get_bytes(page_key(uuid.UUID(job_id), 1))
        async with httpx.AsyncClient(trust_env=False) as http:
            fetched = await http.get(url)  # no key: the signature is the credential
        assert fetched.status_code == 200, fetched.text
        assert fetched.headers["content-type"] == "image/png"
        assert fetched.content == stored

        async with worker_process(settings) as worker:
            job = await settled(client, job_id)
            await worker.wait_for("ocr finished")
        assert job["status"] == "completed", job
        assert "sadipscing" in job["pages"][0]["text"]


async def test_a_job_flows_by_presigned_urls_on_s3_with_a_real_worker(
    tmp_path: Path, channel: AbstractChannel, s3_server: S3Server, s3_bucket: str
) -> None:
    async with url_gateway(tmp_path, **s3_server.settings(s3_bucket)) as gateway:
        settings, services = gateway.settings, gateway.services
        assert services.store.backend == "s3"
        png = await asyncio.to_thread(render_png, LOREM)
        job_id = str(await seed_stored_pages(services, [png]))
        assert (await gateway.client.post(f"/admin/start/{job_id}")).status_code == 202

        body = await peek_page_message(channel, settings.pages_queue)
        message = orjson.loads(body)
        assert set(message) == {"job_id", "page_number", "image_url"}
        assert len(body) < MAX_URL_BODY and b"iVBOR" not in body
        url = message["image_url"]
        assert url.startswith(f"{s3_server.endpoint_url}/{s3_bucket}/") and "Signature=" in url
        async with httpx.AsyncClient(trust_env=False) as http:
            fetched = await http.get(url)  # straight from S3, no credentials but the URL's
        assert fetched.status_code == 200 and fetched.content == png

        async with worker_process(settings):
            job = await settled(gateway.client, job_id)
        assert job["status"] == "completed", job
        assert "sadipscing" in job["pages"][0]["text"]


# ---------------------------------------------------------------- inline, as it was


async def test_an_inline_message_is_byte_for_byte_what_it_was(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    assert services.settings.message_images == "inline"
    job_id = (await upload(client, sample("pdflatex-4-pages.pdf")))["job_id"]
    await wait_rendered(client, job_id)
    assert (await client.post(f"/admin/start/{job_id}/page/2")).status_code == 202
    [body] = await drain(channel, services.settings.pages_queue)
    png = await services.store.get_bytes(page_key(uuid.UUID(job_id), 2))
    image = base64.b64encode(png)
    expected = b'{"job_id":"%s","page_number":2,"image_base64":"%s"}' % (job_id.encode(), image)
    assert body == expected == encode_page_message(uuid.UUID(job_id), 2, png)


async def test_inline_pages_are_read_through_the_s3_store(
    tmp_path: Path, channel: AbstractChannel, s3_server: S3Server, s3_bucket: str
) -> None:
    async with isolated_gateway(tmp_path, **s3_server.settings(s3_bucket)) as gateway:
        pngs = [render_png(LOREM, dpi=40), render_png("pdflatex-4-pages.pdf", dpi=40)]
        job_id = await seed_stored_pages(gateway.services, pngs)
        assert (await gateway.client.post(f"/admin/start/{job_id}")).status_code == 202
        bodies = await drain(channel, gateway.settings.pages_queue)
    by_page = {orjson.loads(body)["page_number"]: body for body in bodies}
    assert by_page == {n: encode_page_message(job_id, n, pngs[n - 1]) for n in (1, 2)}


# ---------------------------------------------------------------- the signed route


async def test_the_signed_page_route_refuses_a_tampered_or_expired_signature(
    tmp_path: Path,
) -> None:
    async with isolated_gateway(tmp_path, message_image_url_secret=SECRET) as gateway:
        png = render_png(LOREM, dpi=40)
        job_id = await seed_stored_pages(gateway.services, [png, png])
        signer = PageUrlSigner.from_settings(gateway.settings)
        assert signer is not None
        base = f"/page-images/{job_id}"
        expires = expiry(60)
        good = {"expires": str(expires), "signature": signer.signature(job_id, 1, expires)}

        ok = await gateway.client.get(f"{base}/1", params=good)
        assert ok.status_code == 200 and ok.content == png
        assert ok.headers["content-length"] == str(len(png))

        last = good["signature"][-1]
        flipped = good["signature"][:-1] + ("1" if last == "0" else "0")
        other_secret = PageUrlSigner("another-secret-of-at-least-32-characters!", "http://x")
        past = expiry(-5)
        refusals = [
            (f"{base}/2", good, "does not match"),  # another page of the job
            (f"/page-images/{uuid.uuid4()}/1", good, "does not match"),  # another job
            (f"{base}/1", {**good, "expires": str(expires + 3600)}, "does not match"),
            (f"{base}/1", {**good, "signature": flipped}, "does not match"),
            (f"{base}/1", {**good, "signature": good["signature"].upper()}, "does not match"),
            (
                f"{base}/1",
                {"expires": str(expires), "signature": other_secret.signature(job_id, 1, expires)},
                "does not match",
            ),
            (
                f"{base}/1",
                {"expires": str(past), "signature": signer.signature(job_id, 1, past)},
                "expired",
            ),
            (f"{base}/1", {"expires": "soon", "signature": good["signature"]}, "not a time"),
            (f"{base}/1", {"expires": str(expires)}, "no expires or no signature"),
            (f"{base}/1", {}, "no expires or no signature"),
        ]
        for path, params, reason in refusals:
            refused = await gateway.client.get(path, params=params)
            assert refused.status_code == 403, (path, params, refused.text)
            assert refused.json()["error"] == "forbidden"
            assert reason in refused.json()["detail"], (params, refused.json())

        gone = expiry(60)
        await gateway.services.store.delete(page_key(job_id, 2))
        missing = await gateway.client.get(
            f"{base}/2", params={"expires": gone, "signature": signer.signature(job_id, 2, gone)}
        )
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_without_a_secret_the_signed_page_route_refuses_everything(
    client: httpx.AsyncClient, services: Components
) -> None:
    assert services.settings.message_image_url_secret is None
    refused = await client.get(
        f"/page-images/{uuid.uuid4()}/1", params={"expires": "1", "signature": "0" * 64}
    )
    assert refused.status_code == 403
    assert "MESSAGE_IMAGE_URL_SECRET" in refused.json()["detail"]


# ---------------------------------------------------------------- failures


async def test_a_missing_page_image_fails_its_page_by_url_as_inline(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with url_gateway(tmp_path) as gateway:
        png = render_png(LOREM, dpi=40)
        job_id = await seed_stored_pages(gateway.services, [png, png])
        await gateway.services.store.delete(page_key(job_id, 1))
        assert (await gateway.client.post(f"/admin/start/{job_id}")).status_code == 202

        async def recorded() -> bool:
            pages = (await job_detail(gateway.client, str(job_id)))["pages"]
            return {p["status"] for p in pages} == {"failed", "queued"}

        await wait_until(recorded, timeout=30)
        first, second = (await job_detail(gateway.client, str(job_id)))["pages"]
        assert first["status"] == "failed" and first["error"] == "the page image is missing"
        assert second["status"] == "queued"
        bodies = await drain(channel, gateway.settings.pages_queue)
        assert [orjson.loads(b)["page_number"] for b in bodies] == [2]


async def test_the_worker_fails_a_refused_url_and_requeues_an_unanswered_one(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with url_gateway(tmp_path) as gateway:
        # The worker answers into a queue of this test's own, which no results consumer reads.
        probe = f"{gateway.settings.results_queue}.probe"
        settings = gateway.settings.model_copy(
            update={"results_queue": probe, "image_fetch_max_bytes": 4096}
        )
        small, large = render_png(LOREM, dpi=10), render_png(LOREM, dpi=100)
        assert len(small) < 4096 < len(large)
        job_id = await seed_stored_pages(gateway.services, [small, small, large])
        signer = PageUrlSigner.from_settings(settings)
        assert signer is not None
        expires = expiry(600)
        seen: list[bytes] = []

        async def recognize(image_base64: str) -> OcrOutput:
            seen.append(base64.b64decode(image_base64))
            return OcrOutput("read", [])

        def url(number: int) -> str:
            return signer.url(job_id, number, expires=expires)

        messages = {
            1: url(1),  # fetched and read
            2: url(2).replace("signature=", "signature=0"),  # refused: failed
            3: url(3),  # over IMAGE_FETCH_MAX_BYTES: failed
        }
        unanswered = encode_page_message(
            job_id, 4, image_url=f"http://127.0.0.1:{free_port()}/page.png"
        )
        stop, abandon = asyncio.Event(), asyncio.Event()
        worker = OcrWorker(settings, recognize, prefetch=4)
        running = asyncio.create_task(worker.run(stop, abandon))
        try:
            for number, image_url in messages.items():
                body = encode_page_message(job_id, number, image_url=image_url)
                await _publish(channel, settings.pages_queue, body)

            async def answered() -> bool:
                return worker.results == len(messages)

            await wait_until(answered, timeout=30)
            await _publish(channel, settings.pages_queue, unanswered)
            await asyncio.sleep(1.0)  # fetched, refused by the closed port, held for its retry
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
        try:
            results = [
                ResultMessage.model_validate_json(b) for b in await drain(channel, probe, 0.3)
            ]
            left = await drain(channel, settings.pages_queue, 0.3)
        finally:
            await channel.queue_delete(probe)
            await channel.queue_delete(dead_letter_queue(probe))

    by_page = {r.page_number: r for r in results}
    assert sorted(by_page) == [1, 2, 3], "no result for the unanswered page"
    assert by_page[1].status == "done" and by_page[1].text == "read" and seen == [small]
    refused, too_large = by_page[2], by_page[3]
    assert refused.status == "failed" and refused.error is not None
    assert "HTTP 403" in refused.error and "does not match" in refused.error
    assert too_large.status == "failed" and too_large.error is not None
    assert "IMAGE_FETCH_MAX_BYTES" in too_large.error
    # The unanswered page went back to the queue: it waits for its server to answer.
    assert left == [unanswered]
    assert worker.results == 3


async def _publish(channel: AbstractChannel, queue: str, body: bytes) -> None:
    await channel.default_exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue
    )

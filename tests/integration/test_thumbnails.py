"""`/images` and job page thumbnails against the real app, PostgreSQL and render pool: real
images go in, their thumbnails come out fitting their boxes as Pillow's `thumbnail()` makes
them, with their caching headers; refusals leave nothing behind; an image whose process died
is taken up again; another tenant's image is not found."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.db.models import ImageStatus, StoredImage
from ocr_gateway.tenants import repository as tenants_repo
from tests.support.documents import blank_pdf, sample
from tests.support.gateway import isolated_gateway, opened_store
from tests.support.launched import Gateway, service_env
from tests.support.replica import replica
from tests.support.stored import job_artefact, job_names
from tests.support.waiting import wait_until

BOXES = {"100x100": (100, 100), "300x300": (300, 300), "1200x1200": (1200, 1200)}


@pytest.fixture
async def root(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the root paths, the ones the thumbnail service's clients call."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", timeout=30
    ) as http:
        yield http


def large_photo() -> bytes:
    """A 4000x2500 RGB JPEG with some detail (a gradient with stripes)."""
    gradient = Image.linear_gradient("L").resize((4000, 2500))
    image = Image.merge("RGB", (gradient, gradient.rotate(90, expand=False), gradient))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def transparent_png() -> bytes:
    image = Image.new("RGBA", (640, 200), (255, 0, 0, 0))
    image.paste((0, 0, 255, 255), (100, 50, 300, 150))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def expected_size(original: bytes, box: tuple[int, int]) -> tuple[int, int]:
    """What Pillow's own `thumbnail()` makes of the original in `box`."""
    with Image.open(io.BytesIO(original)) as image:
        image.load()
        image.thumbnail(box)
        return image.size


async def upload(
    http: httpx.AsyncClient,
    name: str,
    data: bytes,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/images",
    **params: str,
) -> httpx.Response:
    return await http.post(path, files={"file": (name, data)}, headers=headers, params=params)


async def finished(
    http: httpx.AsyncClient, image_id: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Poll GET /images/{id} until it is no longer PROCESSING."""
    seen: dict[str, Any] = {}

    async def done() -> bool:
        response = await http.get(f"/images/{image_id}", headers=headers)
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return bool(seen["status"] != "PROCESSING")

    await wait_until(done, timeout=60, what=f"image {image_id} finished")
    return seen


async def image_dirs(services: Components) -> set[str]:
    """The ids of the images the store holds files of."""
    keys = await services.store.list_keys("images/")
    return {key.split("/")[1] for key in keys}


async def image_files(services: Components, image_id: uuid.UUID | str) -> list[str]:
    """The names of one image's stored files (`original`, `100x100.webp`, ...)."""
    prefix = f"images/{image_id}/"
    return sorted(key[len(prefix) :] for key in await services.store.list_keys(prefix))


async def temp_files(services: Components) -> set[str]:
    return await asyncio.to_thread(lambda: {p.name for p in services.storage.temp_dir.iterdir()})


async def image_rows(services: Components) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM images")) or 0)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("smile.png", lambda: sample("smile.png").read_bytes()),
        ("image.jpg", lambda: sample("image.jpg").read_bytes()),
        ("smile.tiff", lambda: sample("smile.tiff").read_bytes()),
        ("large.jpg", large_photo),
        ("transparent.png", transparent_png),
    ],
)
async def test_an_image_gets_thumbnails_that_fit_their_boxes(
    root: httpx.AsyncClient, services: Components, name: str, content: Any
) -> None:
    original: bytes = content()
    response = await upload(root, name, original)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "PROCESSING"
    assert set(accepted) >= {"id", "status", "message"}
    assert accepted["deduplicated"] is False
    image_id = accepted["id"]

    view = await finished(root, image_id)
    assert view["status"] == "DONE", view
    assert view["error"] is None
    assert view["original_url"] == f"http://gateway/images/{image_id}/original"
    assert set(view["thumbnails"]) == set(BOXES)
    with Image.open(io.BytesIO(original)) as opened:
        assert (view["width"], view["height"]) == opened.size

    for box_name, box in BOXES.items():
        url = view["thumbnails"][box_name]
        assert url == f"http://gateway/images/{image_id}/thumbnails/{box_name}"
        got = await root.get(url)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "image/webp"
        assert "immutable" in got.headers["cache-control"]
        assert "max-age=31536000" in got.headers["cache-control"]
        etag = got.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        with Image.open(io.BytesIO(got.content)) as thumb:
            assert thumb.format == "WEBP"
            width, height = thumb.size
        assert (width, height) == expected_size(original, box), (name, box_name)
        assert width <= box[0] and height <= box[1]
        with Image.open(io.BytesIO(original)) as opened:
            assert width <= opened.width and height <= opened.height, "never enlarged"
            assert abs(width / height - opened.width / opened.height) < 2 / min(width, height)
        again = await root.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.headers["etag"] == etag and again.content == b""
        other = await root.get(url, headers={"If-None-Match": '"something-else"'})
        assert other.status_code == 200

    served = await root.get(view["original_url"])
    assert served.status_code == 200
    assert served.content == original
    expected_type = Image.open(io.BytesIO(original)).get_format_mimetype()
    assert served.headers["content-type"] == expected_type
    assert served.headers["etag"] == '"' + hashlib.sha256(original).hexdigest()[:32] + '"'
    cached = await root.get(view["original_url"], headers={"If-None-Match": served.headers["etag"]})
    assert cached.status_code == 304


async def test_the_same_handlers_answer_under_api_v1(client: httpx.AsyncClient) -> None:
    response = await upload(client, "smile.png", sample("smile.png").read_bytes())
    assert response.status_code == 202, response.text
    image_id = response.json()["id"]
    view = await finished(client, image_id)
    assert view["status"] == "DONE"
    got = await client.get(f"/images/{image_id}/thumbnails/300x300")
    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
    assert (await client.get(f"/images/{image_id}/original")).status_code == 200
    assert (await client.get(f"/images/{image_id}/thumbnails/301x301")).status_code == 422
    assert (await client.get("/images/not-an-id")).status_code == 422


async def test_an_image_is_processing_until_its_thumbnails_are_written(
    root: httpx.AsyncClient, services: Components
) -> None:
    """Right after the upload, the row says PROCESSING and the thumbnails are not served."""
    response = await upload(root, "large.jpg", large_photo())
    image_id = response.json()["id"]
    first = (await root.get(f"/images/{image_id}")).json()
    if first["status"] == "PROCESSING":
        assert first["thumbnails"] is None
        early = await root.get(f"/images/{image_id}/thumbnails/100x100")
        assert early.status_code == 409
        assert early.json()["error"] == "conflict"
    assert (await finished(root, image_id))["status"] == "DONE"


def _bad_inputs() -> list[tuple[str, bytes, int, str]]:
    truncated = sample("image.jpg").read_bytes()
    huge = io.BytesIO()
    Image.new("1", (6000, 5000)).save(huge, "PNG")  # 30 Mpx, over MAX_PAGE_PIXELS (25 Mpx)
    return [
        ("notes.txt", b"just some text, not an image", 415, "unsupported_media_type"),
        ("doc.pdf", blank_pdf(1), 415, "unsupported_media_type"),
        ("empty.png", b"", 400, "bad_request"),
        ("cut.jpg", truncated[: len(truncated) // 3], 422, "invalid_document"),
        ("huge.png", huge.getvalue(), 413, "page_too_large"),
        # Over MAX_UPLOAD_BYTES (8 MiB in the tests), refused while it streams.
        ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(9 * 1024 * 1024), 413, "upload_too_large"),
    ]


@pytest.mark.parametrize(("name", "data", "code", "kind"), _bad_inputs())
async def test_bad_input_is_refused_with_a_reason_and_leaves_nothing(
    root: httpx.AsyncClient, services: Components, name: str, data: bytes, code: int, kind: str
) -> None:
    dirs, temps = await image_dirs(services), await temp_files(services)
    response = await upload(root, name, data)
    assert response.status_code == code, response.text
    body = response.json()
    assert body["error"] == kind and body["detail"]
    assert "index" not in body
    assert await image_rows(services) == 0
    assert await image_dirs(services) == dirs
    assert await temp_files(services) == temps


async def test_a_body_without_a_file_field_is_refused(root: httpx.AsyncClient) -> None:
    response = await root.post("/images", files={"other": ("a.png", b"x")})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


async def test_deleting_an_image_removes_its_row_and_files(
    root: httpx.AsyncClient, services: Components
) -> None:
    image_id = (await upload(root, "image.jpg", sample("image.jpg").read_bytes())).json()["id"]
    await finished(root, image_id)
    assert len(await image_files(services, image_id)) == 4
    deleted = await root.delete(f"/images/{image_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": True, "id": image_id}
    assert (await root.get(f"/images/{image_id}")).status_code == 404
    assert (await root.get(f"/images/{image_id}/original")).status_code == 404
    assert (await root.delete(f"/images/{image_id}")).status_code == 404
    assert await image_files(services, image_id) == []


async def test_another_tenants_image_is_not_found(root: httpx.AsyncClient) -> None:
    a, b = {"X-Tenant-Id": "acme"}, {"X-Tenant-Id": "globex"}
    image_id = (
        await upload(root, "smile.png", sample("smile.png").read_bytes(), headers=a)
    ).json()["id"]
    await finished(root, image_id, a)
    unknown = str(uuid.uuid4())
    for suffix in ("", "/original", "/thumbnails/100x100"):
        hidden = await root.get(f"/images/{image_id}{suffix}", headers=b)
        missing = await root.get(f"/images/{unknown}{suffix}", headers=b)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(image_id, "<id>") == missing.text.replace(unknown, "<id>")
        assert (await root.get(f"/images/{image_id}{suffix}", headers=a)).status_code == 200
    assert (await root.delete(f"/images/{image_id}", headers=b)).status_code == 404
    assert (await root.get(f"/images/{image_id}", headers=a)).json()["status"] == "DONE"


# ------------------------------------------------------------ duplicates


async def test_the_same_bytes_from_the_same_tenant_give_the_same_image(
    root: httpx.AsyncClient,
) -> None:
    data = sample("image.jpg").read_bytes()
    first = await upload(root, "image.jpg", data)
    assert first.status_code == 202
    image_id = first.json()["id"]
    await finished(root, image_id)
    again = await upload(root, "renamed.jpg", data)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == image_id
    assert again.json()["deduplicated"] is True
    assert again.json()["status"] == "DONE"

    fresh = await upload(root, "image.jpg", data, dedup="false")
    assert fresh.status_code == 202 and fresh.json()["id"] != image_id
    by_field = await root.post(
        "/images", files={"file": ("image.jpg", data)}, data={"dedup": "false"}
    )
    assert by_field.status_code == 202 and by_field.json()["id"] not in (
        image_id,
        fresh.json()["id"],
    )
    other_tenant = await upload(root, "image.jpg", data, headers={"X-Tenant-Id": "globex"})
    assert other_tenant.status_code == 202 and other_tenant.json()["id"] != image_id
    bad = await upload(root, "image.jpg", data, dedup="maybe")
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_field"

    assert (await root.delete(f"/images/{image_id}")).status_code == 200
    after_delete = await upload(root, "image.jpg", data)
    assert after_delete.status_code == 202 and after_delete.json()["id"] != image_id


async def test_identical_uploads_at_the_same_moment_make_one_image(
    root: httpx.AsyncClient, services: Components
) -> None:
    data = large_photo()
    answers = await asyncio.gather(*(upload(root, "same.jpg", data) for _ in range(4)))
    ids = {answer.json()["id"] for answer in answers}
    assert len(ids) == 1, [answer.text for answer in answers]
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 202]
    assert await image_rows(services) == 1
    assert await image_dirs(services) >= ids
    await finished(root, ids.pop())


# ------------------------------------------------------------ crash and restart


async def _leave_processing(
    services: Components, original: bytes | None, *, lease_expired: bool = True
) -> uuid.UUID:
    """An image as a process that died half-way leaves it: PROCESSING, its lease run out,
    its original in place (or lost)."""
    image_id = uuid.uuid4()
    if original is not None:
        await services.store.put_bytes(services.thumbnails.original_key(image_id), original)
    lease = dt.timedelta(seconds=-1 if lease_expired else 600)
    async with services.sessions.begin() as session:
        await tenants_repo.ensure_tenant(session, "default")
        session.add(
            StoredImage(
                image_id=image_id,
                tenant="default",
                filename="left.jpg",
                media_type="image/jpeg",
                size_bytes=len(original or b""),
                sha256=hashlib.sha256(original or b"").digest(),
                status=ImageStatus.PROCESSING,
                attempts=1,
                lease_until=dt.datetime.now(dt.UTC) + lease,
            )
        )
    return image_id


async def test_an_image_left_processing_by_a_dead_process_is_taken_up(
    root: httpx.AsyncClient, services: Components
) -> None:
    data = sample("image.jpg").read_bytes()
    orphan = await _leave_processing(services, data)
    lost = await _leave_processing(services, None)
    held = await _leave_processing(services, data, lease_expired=False)
    assert await services.thumbnails.resume_unfinished() == 2  # not the one still leased
    view = await finished(root, str(orphan))
    assert view["status"] == "DONE"
    assert (await root.get(view["thumbnails"]["300x300"])).status_code == 200
    failed = await finished(root, str(lost))
    assert failed["status"] == "FAILED"
    assert "lost" in failed["error"]
    assert failed["thumbnails"] is None
    assert (await root.get(f"/images/{held}")).json()["status"] == "PROCESSING"


async def test_images_an_api_process_left_at_shutdown_are_made_by_the_next(
    root: httpx.AsyncClient, services: Components
) -> None:
    """An API process stops (a deploy, a restart) with images PROCESSING: it hands their leases
    back, and the next process makes their thumbnails from the originals."""
    settings = services.settings.model_copy(update={"render_workers": 1})
    async with replica(settings) as leaving:
        answers = [
            await upload(leaving.client, f"photo-{n}.jpg", large_photo(), dedup="false")
            for n in range(6)
        ]
        ids = [answer.json()["id"] for answer in answers]
    async with services.sessions() as session:
        left = await session.scalar(
            text("SELECT count(*) FROM images WHERE status = 'PROCESSING' AND lease_until <= now()")
        )
    assert left, "the process stopped with no image left PROCESSING: nothing was tested"
    await services.thumbnails.resume_unfinished()
    for image_id in ids:
        view = await finished(root, image_id)
        assert view["status"] == "DONE", view
        assert (await root.get(view["thumbnails"]["1200x1200"])).status_code == 200


async def test_images_of_a_killed_gateway_are_made_after_its_restart(
    tmp_path: Path, spawned: list[Gateway]
) -> None:
    """`ocr-gateway run` killed (SIGKILL, every process) with images PROCESSING: after the
    restart, every image is DONE, made from the originals on disk."""
    extra = {"OCR_GATEWAY_THUMBNAIL_LEASE_S": "2", "OCR_GATEWAY_RENDER_WORKERS": "1"}
    async with service_env(tmp_path, **extra) as (settings, env):
        service = Gateway(env, tmp_path / "gateway.log")
        spawned.append(service)
        await service.start()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            ids = [
                (await upload(http, f"photo-{n}.jpg", large_photo(), dedup="false")).json()["id"]
                for n in range(8)
            ]
            statuses = [(await http.get(f"/images/{i}")).json()["status"] for i in ids]
            assert "PROCESSING" in statuses, "all done before the kill: nothing was tested"
            await service.kill()
            async with opened_store(settings) as store:
                for image_id in ids:
                    assert await store.exists(f"images/{image_id}/original")
            await service.start()
            for image_id in ids:
                view = await finished(http, image_id)
                assert view["status"] == "DONE", view
                got = await http.get(view["thumbnails"]["300x300"])
                assert got.status_code == 200 and got.headers["content-type"] == "image/webp"


async def test_an_image_tried_too_often_fails_with_a_reason(
    root: httpx.AsyncClient, services: Components
) -> None:
    image_id = await _leave_processing(services, sample("image.jpg").read_bytes())
    async with services.sessions.begin() as session:
        attempts = services.settings.thumbnail_max_attempts + 1
        await session.execute(
            text("UPDATE images SET attempts = :n WHERE image_id = :id"),
            {"n": attempts, "id": image_id},
        )
    await services.thumbnails.resume_unfinished()
    failed = await finished(root, str(image_id))
    assert failed["status"] == "FAILED" and "attempts" in failed["error"]


async def test_thumbnails_that_cannot_be_made_in_time_fail_the_image(tmp_path: Path) -> None:
    """The pool task runs over THUMBNAIL_TIMEOUT_S: its worker is killed, the try repeated,
    then the image is FAILED with the reason; the thumbnails are not served."""
    async with isolated_gateway(tmp_path, thumbnail_timeout_s=0.01, render_workers=1) as gateway:
        response = await upload(gateway.client, "large.jpg", large_photo())
        assert response.status_code == 202, response.text
        image_id = response.json()["id"]
        view = await finished(gateway.client, image_id)
        assert view["status"] == "FAILED"
        assert "ran over" in view["error"], view["error"]
        assert view["thumbnails"] is None
        refused = await gateway.client.get(f"/images/{image_id}/thumbnails/100x100")
        assert refused.status_code == 409
        assert refused.json()["status"] == "FAILED"
        # The original is still served, and a FAILED image is not handed out again.
        assert (await gateway.client.get(f"/images/{image_id}/original")).status_code == 200
        again = await upload(gateway.client, "large.jpg", large_photo())
        assert again.status_code == 202 and again.json()["id"] != image_id
        assert await image_files(gateway.services, image_id) == ["original"]


# ------------------------------------------------------------ job pages


async def _rendered_job(client: httpx.AsyncClient, pages: int) -> str:
    response = await client.post("/ocrpdf", files={"file": ("a.pdf", blank_pdf(pages))})
    assert response.status_code == 202, response.text
    job_id = str(response.json()["job_id"])

    async def rendered() -> bool:
        job = (await client.get(f"/jobs/{job_id}")).json()
        return bool(job["rendered_pages"] == pages)

    await wait_until(rendered, what="the job rendered")
    return job_id


async def test_a_job_page_has_thumbnails_made_at_first_request(
    client: httpx.AsyncClient, services: Components
) -> None:
    job_id = await _rendered_job(client, 2)
    page = await job_artefact(services, job_id, "1.png")
    for size, params in ((300, {}), (100, {"size": "100"}), (1200, {"size": "1200"})):
        url = f"/jobs/{job_id}/pages/1/thumbnail"
        got = await client.get(url, params=params)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "image/webp"
        assert "immutable" in got.headers["cache-control"]
        with Image.open(io.BytesIO(got.content)) as thumb:
            assert thumb.size == expected_size(page, (size, size))
            assert max(thumb.size) == size
        kept = await job_artefact(services, job_id, f"thumbnails/1-{size}.webp")
        assert kept == got.content
        etag = got.headers["etag"]
        assert (await client.get(url, params=params)).content == got.content
        cached = await client.get(url, params=params, headers={"If-None-Match": etag})
        assert cached.status_code == 304
    assert (await client.get(f"/jobs/{job_id}/pages/1/thumbnail?size=301")).status_code == 422
    assert (await client.get(f"/jobs/{job_id}/pages/3/thumbnail")).status_code == 404
    unknown = await client.get(f"/jobs/{uuid.uuid4()}/pages/1/thumbnail")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    hidden = await client.get(
        f"/jobs/{job_id}/pages/1/thumbnail", headers={"X-Tenant-Id": "globex"}
    )
    assert hidden.status_code == 404


async def test_concurrent_first_requests_make_a_page_thumbnail_once(
    client: httpx.AsyncClient, services: Components
) -> None:
    job_id = await _rendered_job(client, 1)
    answers = await asyncio.gather(
        *(client.get(f"/jobs/{job_id}/pages/1/thumbnail") for _ in range(6))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    assert await job_names(services, job_id) == ["1.png", "thumbnails/1-300.webp"]


async def test_deleting_every_job_leaves_the_images_alone(
    root: httpx.AsyncClient, client: httpx.AsyncClient, services: Components
) -> None:
    image_id = (await upload(root, "smile.png", sample("smile.png").read_bytes())).json()["id"]
    await finished(root, image_id)
    await services.jobs.delete_all()
    assert (await root.get(f"/images/{image_id}/thumbnails/100x100")).status_code == 200

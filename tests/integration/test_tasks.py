"""OCR in one call (`/image-sync`, `/image`, `/watch-task`) against the real OCR worker: text
back for one image and for a list in order, every refusal with its index and nothing left
behind, the stop, the timeout, the websocket, and two API processes sharing the work.

The worker is a real `python -m ocr_gateway.worker` process (RapidOCR), started once for the
module; the images are one rendered line of text each, so each OCR takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import text

from ocr_gateway.app import API_PREFIX
from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from ocr_gateway.tasks import TASK_PRIORITY
from tests.integration.test_worker import RAPIDOCR_MISSING
from tests.support.documents import blank_pdf, sample
from tests.support.replica import replica
from tests.support.tcp import served
from tests.support.waiting import wait_until
from tests.support.worker import LogLineMissing, WorkerProcess, worker_process

pytestmark = pytest.mark.skipif(RAPIDOCR_MISSING, reason="rapidocr_onnxruntime is missing")

WORDS = ["HELLO WORLD", "GOOD MORNING", "PAPER TRAIL"]
SYNC_TIMEOUT_S = 60.0


def line_png(words: str, *, fmt: str = "PNG") -> bytes:
    """One line of black text on white, as an image file."""
    image = Image.new("L", (80 + 36 * len(words), 80), 255)
    ImageDraw.Draw(image).text((30, 18), words, fill=0, font=ImageFont.load_default(size=40))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def words_of(text: str) -> str:
    return " ".join(text.split()).upper()


# ------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
async def worker(database: Settings, app: FastAPI) -> AsyncIterator[WorkerProcess]:
    try:
        async with worker_process(database, grace=None, start_timeout=90) as process:
            yield process
    except LogLineMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture(autouse=True)
async def publishing(services: Components) -> None:
    """Each test starts with no stop in force (the clean-up of the one before stops)."""
    await services.control.start_all()


async def job_rows(services: Components) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM jobs")) or 0)


def temp_files(services: Components) -> list[str]:
    return sorted(p.name for p in services.storage.temp_dir.iterdir() if p.name != ".gitignore")


async def task_status(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get("/image", params={"task_id": task_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ------------------------------------------------------------ text back


async def test_one_image_answers_its_text_at_the_root_and_under_api_v1(
    client: httpx.AsyncClient, services: Components, worker: WorkerProcess
) -> None:
    body = {"image_data": b64(line_png(WORDS[0]))}
    for url in ("http://gateway/image-sync", "/image-sync"):
        started = time.perf_counter()
        response = await client.post(url, json=body, timeout=SYNC_TIMEOUT_S + 5)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "SUCCESS"
        assert isinstance(answer["result"], str)
        assert words_of(answer["result"]) == WORDS[0], answer
        assert "pages" not in answer or answer["pages"] is None
        print(f"/image-sync {url}: {elapsed * 1000:.0f} ms")

    # The task is a job: the job API and the admin routes see it, with the task's priority.
    task_id = answer["task_id"]
    job = (await client.get(f"/jobs/{task_id}")).json()
    assert (job["status"], job["total_page_number"], job["media_type"]) == (
        "completed",
        1,
        "image/png",
    )
    assert (await client.get(f"/admin/job/{task_id}")).status_code == 200
    async with services.sessions() as session:
        row = (
            await session.execute(
                text("SELECT priority, task_frames, task_list FROM jobs WHERE job_id = :id"),
                {"id": task_id},
            )
        ).one()
    assert (row.priority, row.task_frames, row.task_list) == (TASK_PRIORITY, [1], False)
    assert await task_status(client, task_id) == {
        "task_id": task_id,
        "status": "SUCCESS",
        "result": answer["result"],
        "error": None,
    }
    # Deleting the job deletes the task.
    assert (await client.delete(f"/jobs/{task_id}")).status_code == 200
    assert (await client.get("/image", params={"task_id": task_id})).status_code == 404
    assert not [name for name in temp_files(services) if name.startswith(task_id)]


async def test_a_list_answers_its_texts_in_order_with_detail(
    client: httpx.AsyncClient, services: Components, worker: WorkerProcess
) -> None:
    images = [
        b64(line_png(WORDS[0])),
        "data:image/webp;base64," + b64(line_png(WORDS[1], fmt="WEBP")),
        b64(line_png(WORDS[2], fmt="BMP")),
    ]
    response = await client.post(
        "/image-sync", json={"image_data": images, "detail": True}, timeout=SYNC_TIMEOUT_S + 5
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [words_of(t) for t in answer["result"]] == WORDS
    assert [page["image"] for page in answer["pages"]] == [0, 1, 2]
    for page, words in zip(answer["pages"], WORDS, strict=True):
        assert words_of(page["text"]) == words
        assert page["boxes"], page
        box = page["boxes"][0]
        assert len(box["polygon"]) == 4 and box["text"] and 0 < box["confidence"] <= 1
    job = (await client.get(f"/jobs/{answer['task_id']}")).json()
    assert (job["media_type"], job["total_page_number"]) == ("image/tiff", 3)
    assert not [name for name in temp_files(services) if name.startswith(answer["task_id"])]

    # A list of one is answered as a list.
    one = await client.post("/image-sync", json={"image_data": [images[0]]}, timeout=65)
    assert one.status_code == 200, one.text
    assert [words_of(t) for t in one.json()["result"]] == WORDS[:1]


# ------------------------------------------------------------ refusals


def _pdf_b64() -> str:
    return b64(blank_pdf(1))


BAD_INPUT: list[tuple[str, Any, int, str | None, int | None]] = [
    ("not JSON", b"{image_data:", 422, "invalid_field", None),
    ("not an object", [1, 2], 422, "invalid_field", None),
    ("no image_data", {"image": "x"}, 422, "invalid_field", None),
    ("image_data a number", {"image_data": 3}, 422, "invalid_field", None),
    ("detail a string", {"image_data": "aGk=", "detail": "yes"}, 422, "invalid_field", None),
    ("an empty list", {"image_data": []}, 422, "invalid_field", None),
    ("an empty string", {"image_data": ""}, 422, "invalid_field", 0),
    ("an empty string in a list", {"image_data": ["<png>", ""]}, 422, "invalid_field", 1),
    ("bad base64", {"image_data": ["<png>", "not base64!"]}, 422, "invalid_field", 1),
    ("bad padding", {"image_data": "aGk"}, 422, "invalid_field", 0),
    ("no image", {"image_data": ["<png>", b64(b"plain text, no image")]}, 415, None, 1),
    ("a PDF", {"image_data": ["<png>", "<png>", "<pdf>"]}, 415, None, 2),
    ("a broken PNG", {"image_data": ["<png>", "<broken>"]}, 422, "invalid_document", 1),
    ("too many images", {"image_data": ["<png>"] * 17}, 413, "too_many_images", None),
]


def _filled(value: Any, png: str) -> Any:
    if isinstance(value, dict):
        return {key: _filled(item, png) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, png) for item in value]
    if value == "<png>":
        return png
    if value == "<pdf>":
        return _pdf_b64()
    if value == "<broken>":
        return b64(base64.b64decode(png)[:60])
    return value


@pytest.mark.parametrize(
    ("case", "body", "code", "kind", "index"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_is_refused_with_its_index_and_leaves_nothing(
    client: httpx.AsyncClient,
    services: Components,
    case: str,
    body: Any,
    code: int,
    kind: str | None,
    index: int | None,
) -> None:
    png = b64(sample("smile.png").read_bytes())
    jobs, files = await job_rows(services), temp_files(services)
    for path in ("/image-sync", "/image"):
        if isinstance(body, bytes):
            response = await client.post(
                path, content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await client.post(path, json=_filled(body, png))
        assert response.status_code == code, (case, response.text)
        answer = response.json()
        assert answer["detail"], answer
        if kind is not None:
            assert answer["error"] == kind, answer
        assert answer.get("index") == index, answer
    assert (await job_rows(services), temp_files(services)) == (jobs, files)


async def test_over_the_byte_and_pixel_limits_is_413_and_leaves_nothing(
    database: Settings, services: Components
) -> None:
    """A second API process with small limits: the JSON body is refused while it streams,
    before the rest is read, and each image and the task as a whole are held to the uploads'
    limits (bytes, pixels per page, pixels in all)."""
    limits = database.model_copy(
        update={
            "max_json_body_bytes": 4000,
            "max_upload_bytes": 1500,
            "max_page_pixels": 40_000,
            "max_document_pixels": 100_000,
        }
    )
    jobs, files = await job_rows(services), temp_files(services)
    async with replica(limits) as small:
        pulled = 0

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal pulled
            yield b'{"image_data": "'
            for _ in range(100):
                pulled += 1
                yield b"A" * 1000
            yield b'"}'

        refused = await small.client.post(
            "/image-sync", content=chunks(), headers={"content-type": "application/json"}
        )
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == "body_too_large"
        assert pulled < 10, f"the body was read on ({pulled} chunks) after it was over the limit"
        declared = await small.client.post(
            "/image", content=b"x" * 5000, headers={"content-type": "application/json"}
        )
        assert (declared.status_code, declared.json()["error"]) == (413, "body_too_large")

        big = b64(b"\x89PNG\r\n\x1a\n" + bytes(2000))
        over = await small.client.post("/image", json={"image_data": ["aGk=", big]})
        assert over.status_code in (413, 415) and over.json()["index"] in (0, 1), over.text
        over = await small.client.post("/image", json={"image_data": [big]})
        assert (over.status_code, over.json()["error"], over.json()["index"]) == (
            413,
            "upload_too_large",
            0,
        )

        def blank(width: int, height: int) -> str:
            buffer = io.BytesIO()
            Image.new("L", (width, height), 255).save(buffer, format="PNG")
            return b64(buffer.getvalue())

        too_wide = await small.client.post("/image", json={"image_data": [blank(300, 300)]})
        assert (too_wide.status_code, too_wide.json()["error"]) == (413, "page_too_large")
        assert too_wide.json()["index"] == 0
        # Each image is within the page budget; together they are over the document's.
        together = await small.client.post("/image", json={"image_data": [blank(190, 190)] * 3})
        assert (together.status_code, together.json()["error"]) == (413, "document_too_large")
    assert (await job_rows(services), temp_files(services)) == (jobs, files)


async def test_an_unknown_another_kind_of_job_or_malformed_task_id(
    client: httpx.AsyncClient,
) -> None:
    unknown_id = str(uuid.uuid4())
    unknown = await client.get("/image", params={"task_id": unknown_id})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    upload = await client.post("/ocrpdf", files={"file": ("a.pdf", blank_pdf(1))})
    job_id = upload.json()["job_id"]
    not_a_task = await client.get("/image", params={"task_id": job_id})
    assert not_a_task.status_code == 404
    assert json.loads(not_a_task.text.replace(job_id, "<id>")) == json.loads(
        unknown.text.replace(unknown_id, "<id>")
    )
    assert (await client.get("/image", params={"task_id": "nope"})).status_code == 422
    assert (await client.get("/image")).status_code == 422


# ------------------------------------------------------------ stop, timeout


async def test_while_stopped_sync_is_503_and_async_waits_for_the_start(
    client: httpx.AsyncClient, services: Components, worker: WorkerProcess
) -> None:
    await services.control.stop()
    body = {"image_data": b64(line_png(WORDS[1]))}
    jobs, files = await job_rows(services), temp_files(services)
    refused = await client.post("/image-sync", json=body)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert (await job_rows(services), temp_files(services)) == (jobs, files)

    accepted = await client.post("/image", json=body)
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    assert set(accepted.json()) == {"task_id"}
    await asyncio.sleep(1.0)  # rendered, and not published
    assert (await task_status(client, task_id))["status"] == "PENDING"
    job = (await client.get(f"/jobs/{task_id}")).json()
    assert job["rendered_pages"] == 1 and job["pages"][0]["status"] == "pending"

    await services.control.start_all()

    async def succeeded() -> bool:
        return bool((await task_status(client, task_id))["status"] == "SUCCESS")

    await wait_until(succeeded, timeout=60, what="the task done after the start")
    assert words_of((await task_status(client, task_id))["result"]) == WORDS[1]


async def test_a_sync_call_out_of_time_answers_504_and_get_returns_the_result_later(
    database: Settings, client: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    impatient = database.model_copy(update={"sync_timeout_s": 0.05})
    async with replica(impatient) as other:
        response = await other.client.post(
            "/image-sync", json={"image_data": [b64(line_png(WORDS[2]))]}
        )
    assert response.status_code == 504, response.text
    answer = response.json()
    assert set(answer) == {"task_id", "status"} and answer["status"] in ("PENDING", "STARTED")
    task_id = answer["task_id"]
    seen: list[str] = []

    async def succeeded() -> bool:
        body = await task_status(client, task_id)
        seen.append(body["status"])
        if body["status"] != "SUCCESS":
            assert body["result"] is None
        return bool(body["status"] == "SUCCESS")

    await wait_until(succeeded, timeout=60, interval=0.05, what="the task done after the 504")
    assert [words_of(t) for t in (await task_status(client, task_id))["result"]] == [WORDS[2]]
    assert set(seen) <= {"PENDING", "STARTED", "SUCCESS"}


async def test_a_cancelled_task_is_a_failure(
    client: httpx.AsyncClient, services: Components
) -> None:
    await services.control.stop()
    accepted = await client.post("/image", json={"image_data": b64(line_png(WORDS[0]))})
    task_id = accepted.json()["task_id"]
    assert (await client.post(f"/jobs/{task_id}/cancel")).status_code == 200
    assert await task_status(client, task_id) == {
        "task_id": task_id,
        "status": "FAILURE",
        "result": None,
        "error": "cancelled",
    }


# ------------------------------------------------------------ the websocket


async def test_the_watch_sends_pending_then_progress_then_success_and_closes(
    app: FastAPI, client: httpx.AsyncClient, services: Components, worker: WorkerProcess
) -> None:
    await services.control.stop()
    accepted = await client.post("/image", json={"image_data": [b64(line_png(WORDS[0]))] * 2})
    task_id = accepted.json()["task_id"]
    messages: list[dict[str, Any]] = []
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as live,
    ):
        for path in ("/watch-task", f"{API_PREFIX}/watch-task"):
            async with aconnect_ws(f"{path}?task_id={uuid.uuid4()}", live) as socket:  # type: ignore[var-annotated]
                with pytest.raises(WebSocketDisconnect) as closed:
                    await socket.receive_text()
            assert closed.value.code == 1008 and "does not exist" in str(closed.value.reason)
        async with aconnect_ws("/watch-task?task_id=not-an-id", live) as socket:  # type: ignore[var-annotated]
            with pytest.raises(WebSocketDisconnect) as closed:
                await socket.receive_text()
        assert closed.value.code == 1008

        async with aconnect_ws(f"/watch-task?task_id={task_id}", live) as socket:  # type: ignore[var-annotated]
            messages.append(json.loads(await socket.receive_text()))
            await services.control.start_all()
            with pytest.raises(WebSocketDisconnect) as ended:
                while True:
                    messages.append(json.loads(await asyncio.wait_for(socket.receive_text(), 60)))
        assert ended.value.code == 1000
    first, last = messages[0], messages[-1]
    assert first == {
        "task_id": task_id,
        "status": "PENDING",
        "done": 0,
        "total": 2,
        "result": None,
        "error": None,
    }
    assert last["status"] == "SUCCESS" and last["done"] == 2
    assert [words_of(t) for t in last["result"]] == [WORDS[0]] * 2
    statuses = [m["status"] for m in messages]
    assert statuses == sorted(statuses, key=["PENDING", "STARTED", "SUCCESS"].index)
    assert "STARTED" in statuses
    assert [m["done"] for m in messages] == sorted(m["done"] for m in messages)


# ------------------------------------------------------------ two API processes


async def test_sync_calls_are_answered_by_a_process_that_did_not_store_the_result(
    database: Settings, client: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    """The second process consumes another (idle) results queue: every result is stored by
    the first, and the second answers its sync calls from the events alone."""
    idle = database.model_copy(update={"results_queue": f"{database.results_queue}.idle"})
    try:
        async with replica(idle) as other:
            calls = [
                other.client.post(
                    "/image-sync",
                    json={"image_data": b64(line_png(words))},
                    timeout=SYNC_TIMEOUT_S + 5,
                )
                for words in WORDS
            ]
            calls.append(
                client.post(
                    "/image-sync",
                    json={"image_data": [b64(line_png(WORDS[0]))]},
                    timeout=SYNC_TIMEOUT_S + 5,
                )
            )
            answers = await asyncio.gather(*calls)
    finally:
        connection = await aio_pika.connect(idle.rabbitmq_url.get_secret_value())
        async with connection:
            await (await connection.channel()).queue_delete(idle.results_queue)
    for answer in answers:
        assert answer.status_code == 200, answer.text
    assert [words_of(a.json()["result"]) for a in answers[:3]] == WORDS
    assert [words_of(t) for t in answers[3].json()["result"]] == [WORDS[0]]

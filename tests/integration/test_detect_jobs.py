"""Detect → edit → recognise (`/v1/ocr/jobs`) against the real PostgreSQL, RabbitMQ, render
pool, dispatcher and results consumer.

The end-to-end test runs a real worker process (`python -m ocr_gateway.worker`), with the
default engine (tesserocr) and with RapidOCR;
the tests of refusals (404, 409, 422, atomicity) run the worker's consumer in-process with a
stand-in engine that finds two fixed boxes, so they need no OCR models and stay quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pymupdf
import pytest

from ocr_gateway.components import Components
from ocr_gateway.worker.consumer import OcrWorker
from ocr_gateway.worker.engine import DetectedRegions
from ocr_gateway.worker.layout import OcrOutput
from ocr_gateway.worker.regions import detected_output, recognized_output
from tests.support.documents import blank_pdf, sample
from tests.support.worker import LogLineMissing
from tests.support.worker import worker_process as running_worker

RAPIDOCR_MISSING = importlib.util.find_spec("rapidocr_onnxruntime") is None
needs_ocr = pytest.mark.skipif(
    RAPIDOCR_MISSING,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra "
    "(pip install -e '.[ocr]'; `make test` does)",
)
TEXT_PAGE = "002-trivial-libre-office-writer.pdf"
JOBS = "http://gateway/v1/ocr/jobs"  # the root path, beside the client's /api/v1
# The stand-in detector's boxes, in page pixels of any page at least this big.
STAND_IN_BOXES = [
    [[10.0, 10.0], [110.0, 10.0], [110.0, 40.0], [10.0, 40.0]],
    [[10.0, 60.0], [210.0, 60.0], [210.0, 90.0], [10.0, 90.0]],
]
# Words that the sample page prints only on its 3rd and 6th lines (counted from 1).
DROPPED_ONLY_WORDS = ("justo", "dolores", "rebum", "clita", "kasd", "gubergren")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
async def publishing(services: Components) -> None:
    """Each test starts with no stop in force (the clean-up of the one before stops)."""
    await services.control.start_all()


async def create_job(client: httpx.AsyncClient, tenant: str | None = None) -> str:
    headers = {"X-Tenant-Id": tenant} if tenant else {}
    response = await client.post(JOBS, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "PENDING_UPLOAD"
    return str(body["job_id"])


async def upload_file(
    client: httpx.AsyncClient, job_id: str, name: str, content: bytes, tenant: str | None = None
) -> httpx.Response:
    headers = {"X-Tenant-Id": tenant} if tenant else {}
    return await client.post(
        f"{JOBS}/{job_id}/upload", files={"file": (name, content)}, headers=headers
    )


async def wait_status(
    client: httpx.AsyncClient, job_id: str, wanted: str, timeout: float = 60
) -> dict[str, Any]:
    """The job once its status is `wanted`; fails on FAILED or after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[str] = []
    while True:
        response = await client.get(f"{JOBS}/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] == wanted:
            return job
        assert job["status"] != "FAILED", job
        assert asyncio.get_running_loop().time() < deadline, f"{wanted} not reached: {seen}"
        await asyncio.sleep(0.2)


def assert_wrong_state(response: httpx.Response, status: str) -> None:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "wrong_state" and body["status"] == status, body
    assert status in body["detail"]


def assert_invalid(response: httpx.Response, path: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_field" and body["path"] == path, body


@contextlib.asynccontextmanager
async def stand_in_worker(services: Components) -> AsyncIterator[list[dict[str, Any]]]:
    """The real consumer in-process, with a stand-in engine: `detect` finds STAND_IN_BOXES,
    `recognize` reads each box as `text of <id>`. Yields the pages it was asked, in order."""
    asked: list[dict[str, Any]] = []

    async def recognize(
        image_base64: str,
        tables: bool = False,
        task: str = "ocr",
        boxes: list[dict[str, Any]] | None = None,
    ) -> OcrOutput:
        asked.append({"task": task, "boxes": boxes})
        if task == "detect":
            found: list[tuple[list[list[float]], float | None]] = [
                (points, 0.9) for points in STAND_IN_BOXES
            ]
            return detected_output(DetectedRegions(width=0, height=0, boxes=found))
        assert task == "recognize" and boxes is not None
        return recognized_output(boxes, [(f"text of {box['id']}", 0.8) for box in boxes])

    stop, abandon = asyncio.Event(), asyncio.Event()
    worker = OcrWorker(services.settings, recognize, prefetch=2)
    running = asyncio.create_task(worker.run(stop, abandon))
    try:
        yield asked
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def detected_job(client: httpx.AsyncClient, pages: int = 2) -> tuple[str, dict[str, Any]]:
    """A job of `pages` blank pages, detected by the running stand-in worker."""
    job_id = await create_job(client)
    response = await upload_file(client, job_id, "blank.pdf", blank_pdf(pages))
    assert response.status_code == 202, response.text
    job = await wait_status(client, job_id, "DETECT_DONE")
    return job_id, job["detect_result"]


# ---------------------------------------------------------------- end to end, real worker


def line_boxes(path: Any, width_px: int) -> list[tuple[float, float, float, float]]:
    """The sample page's text lines from its text layer, in page pixels."""
    with pymupdf.open(path) as document:
        page = document[0]
        scale = width_px / page.rect.width
        lines = [
            line["bbox"]
            for block in page.get_text("dict")["blocks"]
            for line in block.get("lines", [])
        ]
    return [(x0 * scale, y0 * scale, x1 * scale, y1 * scale) for x0, y0, x1, y1 in lines]


def box_on_line(
    boxes: list[dict[str, Any]], line: tuple[float, float, float, float]
) -> dict[str, Any]:
    """The detected box whose vertical middle falls on the text line."""

    def middle(box: dict[str, Any]) -> float:
        return sum(float(point[1]) for point in box["points"]) / 4

    found = [box for box in boxes if line[1] <= middle(box) <= line[3]]
    assert len(found) == 1, (line, boxes)
    return found[0]


@needs_ocr
@pytest.mark.parametrize("engine", ["tesserocr", "rapidocr"])
async def test_a_page_is_detected_edited_and_only_its_kept_boxes_recognised(
    client: httpx.AsyncClient, services: Components, engine: str
) -> None:
    """With the default engine (tesserocr) and with RapidOCR, each in a real worker."""
    source = sample(TEXT_PAGE)
    job_id = await create_job(client)
    for call in (
        client.get(f"{JOBS}/{job_id}/detect"),
        client.post(f"{JOBS}/{job_id}/run-ocr"),
        client.patch(f"{JOBS}/{job_id}/detect", json={"job_id": job_id, "pages": []}),
    ):
        assert_wrong_state(await call, "PENDING_UPLOAD")

    try:
        async with running_worker(
            services.settings, grace=None, start_timeout=120, OCR_GATEWAY_OCR_ENGINE=engine
        ):
            response = await upload_file(client, job_id, source.name, source.read_bytes())
            assert response.status_code == 202, response.text
            assert response.json() == {"job_id": job_id, "status": "UPLOADED"}
            job = await wait_status(client, job_id, "DETECT_DONE", timeout=180)
            again = await upload_file(client, job_id, source.name, source.read_bytes())
            assert_wrong_state(again, "DETECT_DONE")

            detected = job["detect_result"]
            assert detected == (await client.get(f"{JOBS}/{job_id}/detect")).json()
            (page,) = detected["pages"]
            assert page["page_index"] == 0 and detected["version"] == 1
            lines = line_boxes(source, page["width"])
            assert len(lines) == 7 and len(page["boxes"]) == 7, page
            on_line = [box_on_line(page["boxes"], line) for line in lines]
            for box in page["boxes"]:
                assert len(box["points"]) == 4 and box["id"]

            # Drop lines 3, 6 and 7; move line 2 a little; draw line 7 again by hand, as an
            # axis-aligned [x0, y0, x1, y1] a few pixels larger than its text.
            moved = {
                **on_line[1],
                "points": [[x + 3, y + 2] for x, y in on_line[1]["points"]],
            }
            x0, y0, x1, y1 = lines[6]
            hand = {"points": [x0 - 6, y0 - 6, x1 + 6, y1 + 6]}
            kept = [on_line[0], moved, on_line[3], on_line[4], hand]
            patched = await client.patch(
                f"{JOBS}/{job_id}/detect",
                json={"job_id": job_id, "pages": [{**page, "boxes": kept}]},
            )
            assert patched.status_code == 200, patched.text
            result = patched.json()
            assert result["version"] == 2
            ids = [box["id"] for box in result["pages"][0]["boxes"]]
            assert ids == [box["id"] for box in on_line[:2] + on_line[3:5]] + ["hand-1"]
            assert result["pages"][0]["boxes"][4]["points"] == [
                [x0 - 6, y0 - 6],
                [x1 + 6, y0 - 6],
                [x1 + 6, y1 + 6],
                [x0 - 6, y1 + 6],
            ]

            ran = await client.post(f"{JOBS}/{job_id}/run-ocr")
            assert ran.status_code == 202, ran.text
            assert ran.json()["status"] == "OCR_RUNNING"
            done = await wait_status(client, job_id, "DONE", timeout=180)
    except LogLineMissing as missing:
        pytest.fail(str(missing))

    (recognized,) = done["ocr_result"]["pages"]
    assert [box["id"] for box in recognized["boxes"]] == ids
    for box in recognized["boxes"]:
        assert box["text"].strip() and box["confidence"] > 0.5, box
    texts = {box["id"]: box["text"].lower() for box in recognized["boxes"]}
    assert "voluptua" in texts[on_line[1]["id"]]
    assert "sanctus" in texts["hand-1"] and "takimata" in texts["hand-1"]
    page_text = recognized["text"].lower()
    for word in DROPPED_ONLY_WORDS:
        assert word not in page_text, (word, page_text)
    assert "consetetur" in page_text and "nonumy" in page_text
    # The job API sees it as any other job, with the recognised text.
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed", job


# ---------------------------------------------------------------- refusals, stand-in worker


async def test_another_tenants_job_is_not_found_and_an_unknown_one_neither(
    client: httpx.AsyncClient,
) -> None:
    job_id = await create_job(client, tenant="acme")
    other = {"X-Tenant-Id": "globex"}
    for method, path in [
        ("GET", f"{JOBS}/{job_id}"),
        ("GET", f"{JOBS}/{job_id}/detect"),
        ("POST", f"{JOBS}/{job_id}/run-ocr"),
        ("PATCH", f"{JOBS}/{job_id}/detect"),
        ("GET", f"{JOBS}/{uuid.uuid4()}"),
    ]:
        response = await client.request(
            method, path, headers=other, json={"job_id": job_id, "pages": []}
        )
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"] == "not_found"
    refused = await upload_file(client, job_id, "blank.pdf", blank_pdf(1), tenant="globex")
    assert refused.status_code == 404, refused.text
    mine = await client.get(f"{JOBS}/{job_id}", headers={"X-Tenant-Id": "acme"})
    assert mine.status_code == 200 and mine.json()["status"] == "PENDING_UPLOAD"


async def test_a_pending_upload_job_is_not_rendered_and_not_in_the_jobs_table(
    client: httpx.AsyncClient, services: Components
) -> None:
    job_id = await create_job(client)
    assert (await client.get(f"/jobs/{job_id}")).status_code == 404
    assert services.renderer.rendering_job_ids == []
    assert await services.renderer.resume_unfinished() == 0


async def test_two_uploads_at_once_record_one_file_and_refuse_the_other(
    client: httpx.AsyncClient, services: Components
) -> None:
    async with stand_in_worker(services):
        job_id = await create_job(client)
        one, two = await asyncio.gather(
            upload_file(client, job_id, "one.pdf", blank_pdf(1)),
            upload_file(client, job_id, "three.pdf", blank_pdf(3)),
        )
        assert sorted([one.status_code, two.status_code]) == [202, 409], (one.text, two.text)
        loser = one if one.status_code == 409 else two
        assert loser.json()["error"] == "wrong_state"
        job = await wait_status(client, job_id, "DETECT_DONE")
    assert job["page_count"] == (1 if one.status_code == 202 else 3), job
    assert len(job["detect_result"]["pages"]) == job["page_count"]
    assert not [p.name for p in services.storage.temp_dir.iterdir() if p.suffix == ".part"]


async def test_detection_waits_while_dispatch_is_stopped_and_runs_after_a_start(
    client: httpx.AsyncClient, services: Components
) -> None:
    await services.control.stop()
    async with stand_in_worker(services) as asked:
        job_id = await create_job(client)
        response = await upload_file(client, job_id, "blank.pdf", blank_pdf(1))
        assert response.status_code == 202, response.text
        await asyncio.sleep(3)
        job = (await client.get(f"{JOBS}/{job_id}")).json()
        assert job["status"] == "UPLOADED" and asked == [], (job, asked)
        assert (await client.post("/admin/start")).status_code == 202
        await wait_status(client, job_id, "DETECT_DONE")
    assert [page["task"] for page in asked] == ["detect"]


async def test_a_stand_in_run_goes_through_every_status_and_recognises_the_stored_boxes(
    client: httpx.AsyncClient, services: Components
) -> None:
    async with stand_in_worker(services) as asked:
        job_id, detected = await detected_job(client, pages=2)
        assert [page["page_index"] for page in detected["pages"]] == [0, 1]
        assert [box["id"] for box in detected["pages"][0]["boxes"]] == ["b1", "b2"]
        assert detected["pages"][0]["boxes"][0]["score"] == 0.9
        # Page 1 keeps one box; page 2 is not listed, so it keeps none.
        page = detected["pages"][0]
        patched = await client.patch(
            f"{JOBS}/{job_id}/detect",
            json={
                "job_id": job_id,
                "pages": [{**page, "boxes": [{"id": "mine", "points": [5, 5, 50, 30]}]}],
            },
        )
        assert patched.status_code == 200, patched.text
        ran = await client.post(f"{JOBS}/{job_id}/run-ocr")
        assert ran.status_code == 202, ran.text
        again = await client.patch(f"{JOBS}/{job_id}/detect", json={"job_id": job_id, "pages": []})
        if again.status_code == 409:  # the pages may already be done
            assert again.json()["status"] in ("OCR_RUNNING",), again.text
        done = await wait_status(client, job_id, "DONE")
    recognize = [page for page in asked if page["task"] == "recognize"]
    assert sorted(len(page["boxes"]) for page in recognize) == [0, 1]
    first, second = done["ocr_result"]["pages"]
    assert [box["id"] for box in first["boxes"]] == ["mine"]
    assert first["text"] == "text of mine" and second["boxes"] == [] and second["text"] == ""
    # The job API and its events see the job as any other.
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed" and job["completed_pages"] == 2, job


async def test_a_bad_patch_is_refused_with_the_path_of_its_field_and_changes_nothing(
    client: httpx.AsyncClient, services: Components
) -> None:
    async with stand_in_worker(services):
        job_id, detected = await detected_job(client, pages=2)
    first, second = detected["pages"]
    width, height = first["width"], first["height"]
    box = {"points": [1, 1, 20, 20]}

    def body(*pages: dict[str, Any]) -> dict[str, Any]:
        return {"job_id": job_id, "pages": list(pages)}

    def page(index: int = 0, **changes: Any) -> dict[str, Any]:
        return {"page_index": index, "width": width, "height": height, "boxes": [box], **changes}

    cases = [
        (body(page(index=2)), "pages[0].page_index"),
        (body(page(), page(index=1, width=width + 1)), "pages[1].width"),
        (body(page(height=height - 1)), "pages[0].height"),
        (body(page(boxes=[box, {"points": [1, 1, width + 1, 20]}])), "pages[0].boxes[1].points"),
        (
            body(page(boxes=[{"points": [[0, 0], [10, 0], [10, -1], [0, 5]]}])),
            "pages[0].boxes[0].points",
        ),
        (body(page(boxes=[{"points": [5, 5, 5, 30]}])), "pages[0].boxes[0].points"),
        (
            body(page(boxes=[{"points": [[5, 5], [50, 5], [50, 5], [5, 5]]}])),
            "pages[0].boxes[0].points",
        ),
        (body(page(boxes=[box] * 5001)), "pages[0].boxes"),
        (body(page(boxes=[{"id": "a", **box}, {"id": "a", **box}])), "pages[0].boxes[1].id"),
        (body(page(boxes=[{"points": [1, 2, 3]}])), "pages[0].boxes[0].points"),
        (body(page(boxes=[{"id": "x"}])), "pages[0].boxes[0].points"),
        ({"job_id": str(uuid.uuid4()), "pages": []}, "job_id"),
    ]
    for patch, path in cases:
        response = await client.patch(f"{JOBS}/{job_id}/detect", json=patch)
        assert_invalid(response, path)
    # The last page is fine and the first bad: nothing of it is kept.
    response = await client.patch(
        f"{JOBS}/{job_id}/detect",
        json=body(page(index=1), page(index=0, boxes=[{"points": [-1, 0, 9, 9]}])),
    )
    assert_invalid(response, "pages[1].boxes[0].points")
    assert (await client.get(f"{JOBS}/{job_id}/detect")).json() == detected
    stored = await services.store.list_keys(f"{job_id}/")
    assert [key for key in stored if "detect" in key] == [f"{job_id}/detect-1.json"]
    assert second["boxes"] and detected["version"] == 1

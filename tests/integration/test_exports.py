"""Results as files: txt, json, zip and pdf of a real rendered sample whose results come from
the results queue as a worker sends them, the page image, bad input, and a client that goes
away mid-download."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import uuid
import zipfile
from collections import defaultdict
from typing import Any

import httpx
import orjson
import pymupdf
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI

from ocr_gateway.components import Components
from ocr_gateway.exports.service import ExportService
from ocr_gateway.storage import StoredFile
from tests.support.documents import sample
from tests.support.http import upload, wait_rendered
from tests.support.results import send_result
from tests.support.stored import job_artefact, job_names
from tests.support.tcp import served
from tests.support.waiting import wait_until

SAMPLE = "pdflatex-4-pages.pdf"


def line_boxes(page: pymupdf.Page, dpi: int) -> list[dict[str, Any]]:
    """The page's lines as an OCR worker would report them: text and box in image pixels."""
    lines: dict[tuple[int, int], list[tuple[float, ...]]] = defaultdict(list)
    words: dict[tuple[int, int], list[str]] = defaultdict(list)
    for x0, y0, x1, y1, word, block, line, _ in page.get_text("words"):
        lines[(block, line)].append((x0, y0, x1, y1))
        words[(block, line)].append(word)
    scale = dpi / 72
    boxes = []
    for key, rects in lines.items():
        bbox = [
            min(r[0] for r in rects) * scale,
            min(r[1] for r in rects) * scale,
            max(r[2] for r in rects) * scale,
            max(r[3] for r in rects) * scale,
        ]
        boxes.append({"bbox": bbox, "text": " ".join(words[key]), "confidence": 0.95})
    return boxes


def page_results(job_id: str, dpi: int) -> list[dict[str, Any]]:
    results = []
    with pymupdf.open(sample(SAMPLE)) as doc:
        for number, page in enumerate(doc, start=1):
            boxes = line_boxes(page, dpi)
            text = "\n".join(box["text"] for box in boxes)
            results.append(
                {
                    "job_id": job_id,
                    "page_number": number,
                    "status": "done",
                    "text": text,
                    "boxes": boxes,
                }
            )
    return results


async def _job_status(client: httpx.AsyncClient, job_id: str) -> str:
    return str((await client.get(f"/jobs/{job_id}")).json()["status"])


async def _rendered(client: httpx.AsyncClient) -> str:
    accepted = await upload(client, sample(SAMPLE))
    await wait_rendered(client, accepted["job_id"])
    return str(accepted["job_id"])


async def _feed(
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    results: list[dict[str, Any]],
) -> None:
    job_id = str(results[0]["job_id"])
    for result in results:
        await send_result(channel, services.settings.results_queue, result)

    async def stored() -> bool:
        job = (await client.get(f"/jobs/{job_id}")).json()
        return bool(job["completed_pages"] + job["failed_pages"] >= len(results))

    await wait_until(stored, timeout=30)


@pytest.fixture
async def finished(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> tuple[str, list[dict[str, Any]]]:
    """A completed job of the 4-page sample, with each page's lines as its results."""
    job_id = await _rendered(client)
    results = page_results(job_id, services.settings.render_dpi)
    await _feed(client, services, channel, results)
    assert await _job_status(client, job_id) == "completed"
    return job_id, results


def _latin(text: str) -> bool:
    """Text the pdf's text layer holds as it is (its font is a standard Latin-1 one)."""
    return len(text) > 10 and all(ord(char) < 128 for char in text)


def _exports(app: FastAPI) -> ExportService:
    exports: ExportService = app.state.components.exports
    return exports


async def test_txt_is_the_pages_text_in_order_separated_by_form_feeds(
    client: httpx.AsyncClient, finished: tuple[str, list[dict[str, Any]]]
) -> None:
    job_id, results = finished
    response = await client.get(f"/jobs/{job_id}/result", params={"format": "txt"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.split("\f") == [result["text"] for result in results]
    assert f"{job_id}.txt" in response.headers["content-disposition"]


async def test_json_has_every_page_with_its_boxes(
    client: httpx.AsyncClient, finished: tuple[str, list[dict[str, Any]]]
) -> None:
    job_id, results = finished
    response = await client.get(f"/jobs/{job_id}/result", params={"format": "json"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["job_id"] == job_id
    assert [page["page_number"] for page in body["pages"]] == [1, 2, 3, 4]
    first = body["pages"][0]
    assert set(first) == {"page_number", "status", "text", "boxes"}
    assert first["status"] == "done"
    assert first["text"] == results[0]["text"]
    box = first["boxes"][0]
    x0, y0, x1, y1 = results[0]["boxes"][0]["bbox"]
    assert box == {
        "text": results[0]["boxes"][0]["text"],
        "confidence": 0.95,
        "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
    }


async def test_zip_holds_each_page_image_and_text_and_the_json(
    client: httpx.AsyncClient,
    services: Components,
    finished: tuple[str, list[dict[str, Any]]],
) -> None:
    job_id, results = finished
    response = await client.get(f"/jobs/{job_id}/result", params={"format": "zip"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    expected = [f"pages/{n:04d}.{ext}" for n in range(1, 5) for ext in ("png", "txt")]
    assert names == [*expected, "result.json"]
    png = await job_artefact(services, job_id, "2.png")
    assert archive.read("pages/0002.png") == png
    assert archive.read("pages/0003.txt").decode() == results[2]["text"]
    document = orjson.loads(archive.read("result.json"))
    assert document["job_id"] == job_id
    assert len(document["pages"]) == 4


async def test_pdf_is_searchable_at_the_boxes(
    client: httpx.AsyncClient,
    services: Components,
    finished: tuple[str, list[dict[str, Any]]],
) -> None:
    job_id, results = finished
    dpi = services.settings.render_dpi
    response = await client.get(f"/jobs/{job_id}/result", params={"format": "pdf"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    with (
        pymupdf.open(stream=response.content, filetype="pdf") as pdf,
        pymupdf.open(sample(SAMPLE)) as original,
    ):
        assert len(pdf) == 4
        for number in (1, 4):
            page, source = pdf[number - 1], original[number - 1]
            # The page is as big as its image at the render DPI: the original's size.
            assert abs(page.rect.width - source.rect.width) < 1
            assert abs(page.rect.height - source.rect.height) < 1
            assert page.get_images(), "the page image is missing"
            text = page.get_text()
            box = next(box for box in results[number - 1]["boxes"] if _latin(box["text"]))
            assert box["text"] in " ".join(text.split())
            found = page.search_for(box["text"])
            assert found, box["text"]
            x0, y0, x1, y1 = (value * 72 / dpi for value in box["bbox"])
            best = min(found, key=lambda rect: abs(rect.x0 - x0) + abs(rect.y0 - y0))
            assert abs(best.x0 - x0) < 2 and abs(best.x1 - x1) < 2, (best, (x0, x1))
            assert abs(best.y0 - y0) < 3 and abs(best.y1 - y1) < 3, (best, (y0, y1))
    # A second request serves the same file, built once.
    files = [name for name in await job_names(services, job_id) if name.endswith(".pdf")]
    again = await client.get(f"/jobs/{job_id}/result", params={"format": "pdf"})
    assert again.content == response.content
    assert [name for name in await job_names(services, job_id) if name.endswith(".pdf")] == files
    assert len(files) == 1 and files[0].startswith("result-")


async def test_two_requests_at_once_share_one_build(
    app: FastAPI,
    client: httpx.AsyncClient,
    finished: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id, _ = finished
    await client.get(f"/jobs/{job_id}/result", params={"format": "txt"})  # the service exists
    exports = _exports(app)
    builds: list[str] = []
    original = exports._build

    async def counted(*args: Any) -> StoredFile:
        builds.append(args[-1])
        return await original(*args)

    monkeypatch.setattr(exports, "_build", counted)
    answers = await asyncio.gather(
        *(client.get(f"/jobs/{job_id}/result", params={"format": "zip"}) for _ in range(3))
    )
    assert [answer.status_code for answer in answers] == [200] * 3
    assert len({answer.content for answer in answers}) == 1
    assert len(builds) == 1


async def test_before_the_end_409_with_the_status_unless_partial(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    job_id = await _rendered(client)
    results = page_results(job_id, services.settings.render_dpi)
    await _feed(client, services, channel, results[:2])
    for fmt in ("txt", "json", "zip", "pdf"):
        refused = await client.get(f"/jobs/{job_id}/result", params={"format": fmt})
        assert refused.status_code == 409, fmt
        body = refused.json()
        assert body["error"] == "conflict"
        assert body["status"] == "pending"
        assert "pending" in body["detail"]
    partial = await client.get(f"/jobs/{job_id}/result", params={"format": "txt", "partial": True})
    assert partial.status_code == 200
    assert partial.text.split("\f") == [results[0]["text"], results[1]["text"], "", ""]
    pdf = await client.get(f"/jobs/{job_id}/result", params={"format": "pdf", "partial": True})
    assert pdf.status_code == 200
    assert await _pdf_kinds(services, job_id) == ["partial"]
    with pymupdf.open(stream=pdf.content, filetype="pdf") as document:
        assert len(document) == 4
        assert results[0]["boxes"][0]["text"] in " ".join(document[0].get_text().split())
        assert document[3].get_text().strip() == ""
    # Once the job is finished, the final export is built: the partial one is not reused.
    await _feed(client, services, channel, results)
    final = await client.get(f"/jobs/{job_id}/result", params={"format": "pdf"})
    assert final.status_code == 200
    assert await _pdf_kinds(services, job_id) == ["result"]
    with pymupdf.open(stream=final.content, filetype="pdf") as document:
        assert document[3].get_text().strip()


async def _pdf_kinds(services: Components, job_id: str) -> list[str]:
    """`result` or `partial` for each pdf export the store holds for the job."""
    names = await job_names(services, job_id)
    return [name.split("-")[0] for name in names if name.endswith(".pdf")]


async def test_bad_input(client: httpx.AsyncClient, finished: tuple[str, list[Any]]) -> None:
    job_id, _ = finished
    unknown = uuid.uuid4()
    for path, params, code in [
        (f"/jobs/{job_id}/result", {"format": "docx"}, 422),
        (f"/jobs/{unknown}/result", {"format": "txt"}, 404),
        (f"/jobs/{unknown}/result", {"format": "pdf"}, 404),
        ("/jobs/not-a-uuid/result", {}, 422),
        (f"/jobs/{unknown}/pages/1/image", {}, 404),
        (f"/jobs/{job_id}/pages/5/image", {}, 404),
        (f"/jobs/{job_id}/pages/0/image", {}, 422),
    ]:
        response = await client.get(path, params=params)
        assert response.status_code == code, (path, params)
        assert {"error", "detail"} <= set(response.json()), path


async def test_page_image_is_the_png_on_disk(
    client: httpx.AsyncClient, services: Components
) -> None:
    job_id = await _rendered(client)
    response = await client.get(f"/jobs/{job_id}/pages/3/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == await job_artefact(services, job_id, "3.png")
    assert response.headers["content-length"] == str(len(response.content))


async def test_openapi_declares_the_binary_answers(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/../../openapi.json")).json()
    result = schema["paths"]["/api/v1/jobs/{job_id}/result"]["get"]
    image = schema["paths"]["/api/v1/jobs/{job_id}/pages/{page_number}/image"]["get"]
    assert result["operationId"] == "get_job_result"
    assert image["operationId"] == "get_job_page_image"
    assert set(result["responses"]["200"]["content"]) == {
        "text/plain; charset=utf-8",
        "application/json",
        "application/zip",
        "application/pdf",
    }
    assert set(image["responses"]["200"]["content"]) == {"image/png"}
    assert set(result["responses"]) == {"200", "401", "403", "404", "409", "422", "503"}
    # 503: the artefact store (an S3 bucket) cannot be reached.
    assert set(image["responses"]) == {"200", "401", "403", "404", "422", "503"}


def _open_handles(path_part: str) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if path_part in target:
            found.append(target)
    return found


async def _download_started(port: int, path: str) -> asyncio.StreamWriter:
    """Ask for `path` over a socket with a tiny receive buffer and read a little of the answer;
    the connection stays open for the caller to drop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head
    await reader.readexactly(1000)
    return writer


async def test_a_client_gone_mid_download_leaves_no_task_or_file_handle(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    accepted = await upload(client, sample("GeoTopo-komprimiert.pdf"))
    job_id = str(accepted["job_id"])
    await wait_rendered(client, job_id)
    path = f"/api/v1/jobs/{job_id}/result?partial=true&format="
    built = await client.get(f"/jobs/{job_id}/result", params={"format": "zip", "partial": True})
    assert built.status_code == 200
    assert len(built.content) > 8_000_000, "too small to be cut off mid-download"
    before = {task for task in asyncio.all_tasks() if not task.done()}
    async with served(app) as port:
        for fmt in ("zip", "json"):
            reading = await _download_started(port, path + fmt)
            try:
                # On local storage the zip is streamed from its file; on S3 from the bucket,
                # with no file of its own to hold open.
                on_disk = app.state.components.store.backend == "local"
                assert _open_handles(job_id) or fmt == "json" or not on_disk, "already over"
            finally:
                reading.transport.abort()  # a reset, as from a client that dies mid-download

            async def let_go() -> bool:
                return not _open_handles(job_id)

            await wait_until(let_go, timeout=10)

        async def settled() -> bool:
            current = {task for task in asyncio.all_tasks() if not task.done()}
            leftover = current - before - {asyncio.current_task()}
            # Only the server's own task (its serve loop) may remain.
            return all("serve" in repr(task.get_coro()) for task in leftover)

        await wait_until(settled, timeout=10)
    assert not _exports(app)._building

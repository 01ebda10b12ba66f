"""`POST /jobs`: a batch of PDFs and images, one job a file in the order sent, all or nothing.

Through the real app, database, inspect pool and render pool. A refused batch answers
`{"error", "detail"}` plus the refused file's `index` when the refusal is about one file, and
keeps no job row and no temp file of any file of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from tests.integration.test_bad_input import count_rows, stored_paths, truncated_pdf
from tests.support.documents import blank_pdf, sample
from tests.support.http import upload, wait_rendered

FileParts = list[tuple[str, tuple[str | None, bytes]]]


def smile_png() -> bytes:
    return sample("smile.png").read_bytes()


def batch(*files: tuple[str, bytes]) -> FileParts:
    return [("files", file) for file in files]


async def submit(client: httpx.AsyncClient, files: FileParts) -> httpx.Response:
    return await client.post("/jobs", files=files)


async def accepted_jobs(client: httpx.AsyncClient, files: FileParts) -> list[dict[str, Any]]:
    response = await submit(client, files)
    assert response.status_code == 202, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


async def assert_batch_refused(
    response: httpx.Response,
    services: Components,
    before: set[Path],
    *,
    status: int,
    kind: str,
    index: int | None,
) -> None:
    """The answer names the refusal (and the file, if it is about one) and nothing is kept."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind, body
    assert isinstance(body["detail"], str) and body["detail"], body
    if index is None:
        assert set(body) == {"error", "detail"}, body
    else:
        assert set(body) == {"error", "detail", "index"}, body
        assert body["index"] == index, body
    assert await count_rows(services, "jobs") == 0
    assert await count_rows(services, "pages") == 0
    assert stored_paths(services) - before == set(), "a refused batch left files behind"


async def test_a_batch_answers_its_jobs_in_the_order_sent_and_each_renders(
    client: httpx.AsyncClient,
) -> None:
    files = batch(
        ("three.pdf", blank_pdf(3)),
        ("one.pdf", blank_pdf(1)),
        ("four.pdf", sample("pdflatex-4-pages.pdf").read_bytes()),
    )
    jobs = await accepted_jobs(client, files)
    assert [job["filename"] for job in jobs] == ["three.pdf", "one.pdf", "four.pdf"]
    assert [job["total_page_number"] for job in jobs] == [3, 1, 4]
    assert {job["status"] for job in jobs} == {"pending"}
    assert len({job["job_id"] for job in jobs}) == 3
    for job in jobs:
        rendered = await wait_rendered(client, job["job_id"])
        assert rendered["rendered_pages"] == job["total_page_number"]
        shown = await client.get(f"/jobs/{job['job_id']}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["filename"] == job["filename"]


async def test_a_mixed_batch_of_pdfs_and_images(client: httpx.AsyncClient) -> None:
    files = batch(
        ("smile.png", smile_png()),
        ("doc.pdf", blank_pdf(2)),
        ("smile.jpg", sample("smile.jpg").read_bytes()),
        ("smile.tiff", sample("smile.tiff").read_bytes()),
    )
    jobs = await accepted_jobs(client, files)
    assert [job["media_type"] for job in jobs] == [
        "image/png",
        "application/pdf",
        "image/jpeg",
        "image/tiff",
    ]
    for job in jobs:
        await wait_rendered(client, job["job_id"])


def bad_at_2(_settings: Settings) -> FileParts:
    """Files 0 and 1 pass inspection; file 2 (a truncated PDF) does not."""
    return batch(
        ("good-1.pdf", blank_pdf(2)),
        ("good-2.png", smile_png()),
        ("cut.pdf", truncated_pdf()),
    )


def wrong_type_at_1(_settings: Settings) -> FileParts:
    text = b"plain text that claims to be a PDF\n" * 50
    return batch(("ok.pdf", blank_pdf(1)), ("notes.pdf", text), ("ok.png", smile_png()))


def over_the_cap_at_1(settings: Settings) -> FileParts:
    big = b"%PDF-1.7\n" + b"\x00" * settings.max_upload_bytes
    return batch(("ok.pdf", blank_pdf(1)), ("big.pdf", big))


def one_file_too_many(settings: Settings) -> FileParts:
    assert settings.max_files_per_request == 32, "the default"
    count = settings.max_files_per_request + 1
    return batch(*((f"page-{n}.png", smile_png()) for n in range(count)))


def empty_at_1(_settings: Settings) -> FileParts:
    return batch(("ok.png", smile_png()), ("empty.pdf", b""))


@pytest.mark.parametrize(
    ("files", "status", "kind", "index"),
    [
        (bad_at_2, 422, "invalid_document", 2),
        (wrong_type_at_1, 415, "unsupported_media_type", 1),
        (over_the_cap_at_1, 413, "upload_too_large", 1),
        (one_file_too_many, 413, "too_many_files", 32),
        (empty_at_1, 400, "bad_request", 1),
    ],
    ids=["bad-document-at-2", "wrong-type-at-1", "over-the-cap-at-1", "33-files", "empty-at-1"],
)
async def test_a_refused_file_is_named_and_nothing_of_the_batch_is_kept(
    client: httpx.AsyncClient,
    services: Components,
    files: Callable[[Settings], FileParts],
    status: int,
    kind: str,
    index: int,
) -> None:
    before = stored_paths(services)
    response = await submit(client, files(services.settings))
    await assert_batch_refused(response, services, before, status=status, kind=kind, index=index)


NOT_A_BATCH: dict[str, dict[str, Any]] = {
    "no-files-field": {"files": [("note", (None, b"a form field, no file"))]},
    "file-instead-of-files": {"files": [("file", ("single.pdf", b"%PDF-1.7\n"))]},
    "no-parts": {
        "content": b"--empty-batch--\r\n",
        "headers": {"content-type": "multipart/form-data; boundary=empty-batch"},
    },
    "json": {"json": {"files": []}},
}


@pytest.mark.parametrize("request_options", NOT_A_BATCH.values(), ids=NOT_A_BATCH.keys())
async def test_a_request_without_files_is_400_with_no_index(
    client: httpx.AsyncClient, services: Components, request_options: dict[str, Any]
) -> None:
    before = stored_paths(services)
    response = await client.post("/jobs", **request_options)
    await assert_batch_refused(
        response, services, before, status=400, kind="bad_request", index=None
    )


async def test_a_batch_and_single_uploads_at_once(client: httpx.AsyncClient) -> None:
    """A batch shares the inspect pool with other uploads; all of them are accepted."""
    files = batch(*((f"doc-{n}.pdf", blank_pdf(n + 1)) for n in range(6)))
    answers = await asyncio.gather(
        accepted_jobs(client, files),
        upload(client, "single.pdf", blank_pdf(2)),
        upload(client, "smile.png", smile_png(), kind="image"),
        accepted_jobs(client, batch(("other.pdf", blank_pdf(1)))),
    )
    first, single, image, second = answers
    assert [job["total_page_number"] for job in first] == [1, 2, 3, 4, 5, 6]
    ids = [job["job_id"] for job in (*first, single, image, *second)]
    assert len(set(ids)) == 9
    for job_id in ids:
        await wait_rendered(client, job_id)


def test_openapi_documents_the_batch(app: FastAPI) -> None:
    schema = app.openapi()
    operation = schema["paths"]["/api/v1/jobs"]["post"]
    assert operation["operationId"] == "submit_jobs"
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["files"]
    assert body["properties"]["files"]["type"] == "array"
    assert body["properties"]["files"]["items"] == {"type": "string", "format": "binary"}
    errors = {"400", "401", "403", "413", "415", "422", "429", "503"}
    assert set(operation["responses"]) == {"200", "202"} | errors
    accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/BatchAccepted"}
    error = schema["components"]["schemas"]["ErrorResponse"]
    assert "index" in error["properties"]
    assert error["required"] == ["error", "detail"]

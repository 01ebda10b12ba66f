"""The async SDK (`clients/python`, `ocr_gateway_client`) against the live gateway over real
TCP: submit real samples, follow events while a worker's results arrive, wait, fetch and
download the result, cancel, delete, typed errors, and events that resume after the
connection drops in the middle of the stream; tables to XLSX (`convert_tables`,
`download_file`), the text layer and duplicate uploads, and `/images` thumbnails."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from ocr_gateway_client import (
    AsyncGatewayClient,
    Download,
    Event,
    InvalidRequest,
    Job,
    JobConflict,
    JobNotFound,
    UnsupportedMediaType,
    WaitTimeout,
)
from openpyxl import load_workbook
from PIL import Image

from ocr_gateway.components import Components
from tests.integration.test_convert import file_id_of, table
from tests.support.documents import sample
from tests.support.http import wait_rendered
from tests.support.proxy import FaultProxy
from tests.support.results import done, send_result
from tests.support.tcp import served
from tests.support.waiting import wait_until

FOUR_PAGES = "pdflatex-4-pages.pdf"


@pytest.fixture
async def port(app: FastAPI) -> AsyncIterator[int]:
    async with served(app) as tcp_port:
        yield tcp_port


@pytest.fixture
async def sdk(port: int) -> AsyncIterator[AsyncGatewayClient]:
    async with AsyncGatewayClient(f"http://127.0.0.1:{port}") as gateway:
        yield gateway


async def _rendered(client: httpx.AsyncClient, job: Job) -> None:
    await wait_rendered(client, str(job.job_id))


async def _feed(services: Components, channel: AbstractChannel, job: Job, page: int) -> None:
    await send_result(
        channel, services.settings.results_queue, done(str(job.job_id), page, f"text {page}")
    )


async def _page_done(sdk: AsyncGatewayClient, job: Job, page: int) -> None:
    async def is_done() -> bool:
        return (await sdk.page(job, page)).status == "done"

    await wait_until(is_done, what=f"page {page} done")


async def test_submit_follow_wait_fetch_download_and_delete(
    sdk: AsyncGatewayClient,
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    tmp_path: Path,
) -> None:
    image = sample("smile.png")
    with image.open("rb") as handle:
        pdf_job, bytes_job, file_job = await sdk.submit(
            sample(FOUR_PAGES), ("smile.png", image.read_bytes()), handle
        )
    assert (pdf_job.filename, pdf_job.total_page_number, pdf_job.status) == (
        FOUR_PAGES,
        4,
        "pending",
    )
    assert (bytes_job.filename, file_job.filename) == ("smile.png", "smile.png")
    for job in (pdf_job, bytes_job, file_job):
        await _rendered(client, job)

    seen: list[Event] = []

    async def follow() -> None:
        async for event in sdk.events(pdf_job):
            seen.append(event)

    follower = asyncio.create_task(follow())
    await wait_until(lambda: _seen(follower, len(seen) >= 1), what="the snapshot")
    for page in range(1, 5):
        await _feed(services, channel, pdf_job, page)
    await asyncio.wait_for(follower, 30)

    assert [event.type for event in seen] == ["job.snapshot"] + ["page.done"] * 4 + [
        "job.completed"
    ]
    assert sorted(event.page_number or 0 for event in seen[1:5]) == [1, 2, 3, 4]
    assert seen[-1].terminal and seen[-1].completed_pages == 4

    finished = await sdk.wait(pdf_job, timeout=10)
    assert finished.status == "completed" and finished.finished
    assert [page.status for page in finished.pages] == ["done"] * 4

    text = await sdk.result(pdf_job, "txt")
    assert text.decode().split("\f") == [f"text {page}" for page in range(1, 5)]
    path = await sdk.download(pdf_job, "txt", tmp_path / "result.txt")
    assert path.read_bytes() == text
    into_folder = await sdk.download(pdf_job.job_id, "json", tmp_path)
    assert into_folder == tmp_path / f"{pdf_job.job_id}.json"
    assert into_folder.read_bytes().startswith(b"{")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["result.txt", f"{pdf_job.job_id}.json"]
    ), "no partial file is left behind"

    deleted = await sdk.delete(pdf_job)
    assert (deleted.deleted, deleted.job_id) == ("job", pdf_job.job_id)
    with pytest.raises(JobNotFound) as missing:
        await sdk.get(pdf_job)
    assert missing.value.status_code == 404
    assert missing.value.error == "not_found"
    assert str(pdf_job.job_id) in str(missing.value.detail)
    with pytest.raises(JobNotFound):
        await sdk.delete(pdf_job)


async def _seen(follower: asyncio.Task[None], enough: bool) -> bool:
    """`enough` events were seen; a follower that failed meanwhile fails the test at once."""
    if follower.done():
        follower.result()
    return enough


async def test_cancel_then_wait_and_events_end_at_once(
    sdk: AsyncGatewayClient, client: httpx.AsyncClient
) -> None:
    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    cancelled = await sdk.cancel(job)
    assert (cancelled.status, cancelled.cancelled_pages) == ("cancelled", 4)
    assert (await sdk.cancel(job.job_id)).status == "cancelled", "a second cancel is a no-op"
    assert (await asyncio.wait_for(sdk.wait(job), 10)).status == "cancelled"
    events = [event async for event in sdk.events(str(job.job_id))]
    assert [(event.type, event.status, event.id) for event in events] == [
        ("job.snapshot", "cancelled", None)
    ]


async def test_refusals_raise_typed_errors_with_the_gateway_reason(
    sdk: AsyncGatewayClient, client: httpx.AsyncClient
) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(JobNotFound) as not_found:
        await sdk.get(unknown)
    assert not_found.value.body == {
        "error": "not_found",
        "detail": f"job {unknown} does not exist",
    }
    with pytest.raises(JobNotFound):
        [_ async for _ in sdk.events(unknown)]
    with pytest.raises(InvalidRequest) as malformed:
        await sdk.get("not-a-uuid")
    assert malformed.value.status_code == 422

    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    with pytest.raises(JobConflict) as early:
        await sdk.result(job, "txt")
    assert early.value.status_code == 409
    assert early.value.detail
    with pytest.raises(InvalidRequest):
        await sdk.result(job, "docx")  # type: ignore[arg-type]
    with pytest.raises(WaitTimeout) as timed_out:
        await sdk.wait(job, timeout=0.3)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.job.status == "pending"

    with pytest.raises(UnsupportedMediaType) as refused:
        await sdk.submit(sample("smile.png"), ("notes.txt", b"just some text, not a document"))
    assert refused.value.index == 1
    assert refused.value.error == "unsupported_media_type"


async def test_events_resume_after_the_connection_drops_without_gap_or_duplicate(
    port: int,
    sdk: AsyncGatewayClient,
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
) -> None:
    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    proxy = FaultProxy("127.0.0.1", port)
    await proxy.start()
    seen: list[Event] = []
    try:
        async with AsyncGatewayClient(f"http://127.0.0.1:{proxy.port}") as through_proxy:

            async def follow() -> None:
                async for event in through_proxy.events(job):
                    seen.append(event)

            follower = asyncio.create_task(follow())
            await _feed(services, channel, job, 1)
            await wait_until(lambda: _seen(follower, len(seen) == 2), what="page 1's event")

            proxy.cut()  # the connection drops mid-stream; reconnects are refused for now
            await _feed(services, channel, job, 2)
            await _page_done(sdk, job, 2)
            await asyncio.sleep(0.5)
            proxy.restore()
            await wait_until(
                lambda: _seen(follower, len(seen) >= 4), what="the catch-up after resuming"
            )
            for page in (3, 4):
                await _feed(services, channel, job, page)
            await asyncio.wait_for(follower, 30)
    finally:
        await proxy.close()

    assert [(event.type, event.page_number) for event in seen] == [
        ("job.snapshot", None),
        ("page.done", 1),
        ("job.snapshot", None),  # a fresh one on reconnecting
        ("page.done", 2),  # recorded while disconnected: sent on resuming
        ("page.done", 3),
        ("page.done", 4),
        ("job.completed", None),
    ]
    assert seen[2].completed_pages == 2, "the reconnect's snapshot is current"
    ids = [event.id for event in seen if event.id is not None]
    assert ids == sorted(set(ids)), "ids increase, none twice"


async def test_api_key_and_tenant_are_sent_only_when_given() -> None:
    seen: list[tuple[str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("authorization"), request.headers.get("x-tenant-id")))
        return httpx.Response(404, json={"error": "not_found", "detail": "no such job"})

    for key, tenant in (("s3cret", None), (None, None), (None, "acme"), ("s3cret", "acme")):
        async with AsyncGatewayClient(
            "http://gateway", api_key=key, tenant=tenant, transport=httpx.MockTransport(handler)
        ) as gateway:
            with pytest.raises(JobNotFound):
                await gateway.get(uuid.uuid4())
    assert seen == [
        ("Bearer s3cret", None),
        (None, None),
        (None, "acme"),
        ("Bearer s3cret", "acme"),
    ]


async def test_each_job_carries_its_tenant_and_another_tenant_is_told_it_does_not_exist(
    port: int,
) -> None:
    base = f"http://127.0.0.1:{port}"
    async with (
        AsyncGatewayClient(base, tenant="acme") as acme,
        AsyncGatewayClient(base, tenant="globex") as globex,
    ):
        [job] = await acme.submit(("smile.png", sample("smile.png").read_bytes()))
        assert (await acme.get(job)).tenant == "acme"
        assert [summary.tenant for summary in (await acme.jobs()).jobs] == ["acme"]
        assert (await globex.jobs()).jobs == []
        with pytest.raises(JobNotFound) as hidden:
            await globex.get(job)
        assert hidden.value.detail == f"job {job.job_id} does not exist"
        with pytest.raises(JobNotFound):
            await globex.cancel(job)
        with pytest.raises(JobNotFound):
            await globex.delete(job)
        assert (await acme.get(job)).status != "cancelled"


TRIVIAL_PDF = "002-trivial-libre-office-writer.pdf"


async def test_convert_tables_then_download_the_workbook_and_a_duplicate_batch_is_that_job(
    sdk: AsyncGatewayClient,
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    tmp_path: Path,
) -> None:
    files = (sample(TRIVIAL_PDF), ("smile.png", sample("smile.png").read_bytes()))
    accepted = await sdk.convert_tables(*files, text_layer="off")
    assert (accepted.status, accepted.deduplicated) == ("pending", False)
    assert [(f.index, f.filename, f.total_page_number) for f in accepted.files] == [
        (0, TRIVIAL_PDF, 1),
        (1, "smile.png", 1),
    ]
    job_id = str(accepted.job_id)
    await wait_rendered(client, job_id)

    again = await sdk.convert_tables(*files, text_layer="off")
    assert (again.job_id, again.deduplicated) == (accepted.job_id, True)
    assert again.files == accepted.files
    fresh = await sdk.convert_tables(*files, text_layer="off", dedup=False)
    assert fresh.job_id != accepted.job_id and not fresh.deduplicated
    await wait_rendered(client, str(fresh.job_id))

    # Not done yet: the workbook is a 409, raised as the SDK's JobConflict.
    early_id = await file_id_of(services, job_id)
    with pytest.raises(JobConflict) as early:
        await sdk.download_file(early_id)
    assert early.value.status_code == 409 and early.value.body["status"] == "pending"
    assert (await sdk.get(accepted)).downloads == [], "no download is listed before done"

    grid = table([("Item", 1, 1), ("Amount", 1, 1)], [("Apples", 1, 1), ("0.45", 1, 1)])
    results = [
        {**done(job_id, 1, "first line\nsecond line"), "tables": []},
        {**done(job_id, 2, "Item Amount"), "tables": [grid]},
    ]
    for result in results:
        await send_result(channel, services.settings.results_queue, result)
    job = await sdk.wait(accepted, timeout=30)
    assert job.status == "completed"
    assert [(page.status, page.source) for page in job.pages] == [("done", "ocr")] * 2
    assert (await sdk.page(accepted, 2)).source == "ocr"
    [download] = job.downloads
    assert download == Download(file_id=early_id, kind="xlsx", url=f"/api/v1/download/{early_id}")

    content = await sdk.download_file(download)
    book = load_workbook(io.BytesIO(content))
    assert len(book.sheetnames) == 2 and book.sheetnames[1] == "smile p1 t1"
    assert [row[0].value for row in book.worksheets[0].iter_rows()] == [
        "first line",
        "second line",
    ]
    assert [[c.value for c in row] for row in book["smile p1 t1"].iter_rows()] == [
        ["Item", "Amount"],
        ["Apples", 0.45],
    ]
    path = await sdk.download_file(download.file_id, tmp_path / "tables.xlsx")
    assert path == tmp_path / "tables.xlsx" and path.read_bytes() == content
    named = await sdk.download_file(str(download.file_id), tmp_path)
    assert named.parent == tmp_path and named.suffix == ".xlsx"
    assert named.name == f"{Path(TRIVIAL_PDF).stem}-and-1-more.xlsx"
    assert named.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tables.xlsx", named.name])

    await sdk.delete(accepted)
    with pytest.raises(JobNotFound):
        await sdk.download_file(download)


async def test_a_born_digital_pdf_converts_from_its_text_layer_without_a_worker(
    sdk: AsyncGatewayClient, tmp_path: Path
) -> None:
    accepted = await sdk.convert_tables(sample(FOUR_PAGES))  # text_layer is auto here
    job = await sdk.wait(accepted, timeout=60)
    assert job.status == "completed"
    assert [page.source for page in job.pages] == ["text_layer"] * 4
    page = await sdk.page(job, 1)
    assert page.source == "text_layer" and page.text
    [download] = job.downloads
    path = await sdk.download_file(download, tmp_path)
    book = load_workbook(path)
    assert book.sheetnames, "every page gives at least a sheet of its text lines"
    assert all(name.startswith("pdflatex-4-pages p") for name in book.sheetnames)


async def test_submit_sends_text_layer_and_dedup_and_reports_deduplicated(
    sdk: AsyncGatewayClient, client: httpx.AsyncClient
) -> None:
    [first] = await sdk.submit(sample(FOUR_PAGES), text_layer="off")
    assert not first.deduplicated
    [again] = await sdk.submit(sample(FOUR_PAGES), text_layer="off")
    assert (again.job_id, again.deduplicated) == (first.job_id, True)
    [fresh] = await sdk.submit(sample(FOUR_PAGES), text_layer="off", dedup=False)
    assert fresh.job_id != first.job_id and not fresh.deduplicated
    [auto] = await sdk.submit(sample(FOUR_PAGES), text_layer="auto")
    assert auto.job_id != first.job_id, "other options are another job"
    for job in (first, fresh):
        await _rendered(client, job)
    finished = await sdk.wait(auto, timeout=60)
    assert finished.status == "completed"
    assert {page.source for page in finished.pages} == {"text_layer"}
    assert (await sdk.get(first)).pages[0].source == "ocr"
    with pytest.raises(InvalidRequest):
        await sdk.submit(sample(FOUR_PAGES), text_layer="sometimes")  # type: ignore[arg-type]


async def test_an_image_gets_thumbnails_through_the_sdk(sdk: AsyncGatewayClient) -> None:
    original = sample("image.jpg").read_bytes()
    accepted = await sdk.upload_image(sample("image.jpg"))
    assert (accepted.status, accepted.deduplicated) == ("PROCESSING", False)
    assert accepted.message

    image = await sdk.image(accepted, wait=60)
    assert image.status == "DONE" and image.finished and image.id == accepted.id
    assert image.thumbnails is not None
    assert sorted(image.thumbnails) == ["100x100", "1200x1200", "300x300"]
    assert (image.width, image.height, image.filename) == (300, 200, "image.jpg")

    with Image.open(io.BytesIO(original)) as photo:
        for size in ("100x100", "300x300", "1200x1200"):
            box = int(size.split("x")[0])
            expected = photo.copy()
            expected.thumbnail((box, box))
            data = await sdk.image_thumbnail(image, size)
            with Image.open(io.BytesIO(data)) as thumb:
                assert (thumb.format, thumb.size) == ("WEBP", expected.size), size
    assert await sdk.image_original(image.id) == original

    duplicate = await sdk.upload_image(("again.jpg", original))
    assert (duplicate.id, duplicate.deduplicated) == (image.id, True)
    fresh = await sdk.upload_image(("again.jpg", original), dedup=False)
    assert fresh.id != image.id and not fresh.deduplicated
    assert (await sdk.image(str(fresh.id), wait=60)).status == "DONE"

    deleted = await sdk.delete_image(image)
    assert (deleted.deleted, deleted.id) == (True, image.id)
    with pytest.raises(JobNotFound):
        await sdk.image(image.id)
    with pytest.raises(JobNotFound):
        await sdk.image_thumbnail(image.id)
    await sdk.delete_image(fresh)
    with pytest.raises(UnsupportedMediaType):
        await sdk.upload_image(("notes.txt", b"just some text, not an image"))


async def test_a_download_into_a_folder_keeps_only_the_last_part_of_the_servers_filename(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "into"
    folder.mkdir()
    names = iter(['attachment; filename="../../evil.xlsx"', "attachment", None])

    def handler(request: httpx.Request) -> httpx.Response:
        disposition = next(names)
        headers = {"content-disposition": disposition} if disposition else {}
        return httpx.Response(200, content=b"PK workbook", headers=headers)

    file_id = uuid.uuid4()
    async with AsyncGatewayClient(
        "http://gateway", transport=httpx.MockTransport(handler)
    ) as gateway:
        first = await gateway.download_file(file_id, folder)
        second = await gateway.download_file(Download(file_id=file_id, kind="xlsx", url=""), folder)
        third = await gateway.download_file(str(file_id), folder / "named.xlsx")
    assert first == folder / "evil.xlsx"
    assert second == folder / f"{file_id}.xlsx"
    assert third == folder / "named.xlsx"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["into", "evil.xlsx", f"{file_id}.xlsx", "named.xlsx"]
    )


def test_an_older_gateways_job_and_page_still_parse() -> None:
    job = Job.model_validate(
        {
            "job_id": str(uuid.uuid4()),
            "status": "completed",
            "filename": "a.pdf",
            "total_page_number": 1,
            "pages": [{"page_number": 1, "status": "done"}],
        }
    )
    assert (job.downloads, job.deduplicated, job.pages[0].source) == ([], False, "ocr")

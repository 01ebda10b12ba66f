"""The pure parts of tasks: the body read with a byte count, the request's shape, strict base64
with data URLs, the status words, and the result's shape."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from ocr_gateway.core.errors import GatewayError
from ocr_gateway.tasks.body import (
    decode_image,
    decode_images,
    decoded_length,
    images_of,
    parse_request,
    read_body,
    strip_data_url,
)
from ocr_gateway.tasks.schemas import TaskState
from ocr_gateway.tasks.status import (
    PageView,
    detail_pages,
    failure_reason,
    page_images,
    shape_result,
    task_state,
)
from ocr_gateway.uploads.media import MediaType

PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refusal(exc: pytest.ExceptionInfo[GatewayError]) -> tuple[int, str, object]:
    return exc.value.status_code, exc.value.kind, exc.value.fields.get("index")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data:image/png;base64,QUJD", "QUJD"),
        ("DATA:image/jpeg;charset=x;base64,QUJD", "QUJD"),
        ("data:;base64,QUJD", "QUJD"),
        ("QUJD", "QUJD"),
        ("data:image/png,QUJD", "data:image/png,QUJD"),  # not base64: left to fail
    ],
)
def test_a_data_url_prefix_is_taken_off(text: str, expected: str) -> None:
    assert strip_data_url(text) == expected


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 100, 1001])
def test_decoded_length_is_exact_for_valid_base64(size: int) -> None:
    assert decoded_length(b64(bytes(size))) == size


def test_an_image_is_decoded_with_its_media_type() -> None:
    image = decode_image("data:image/png;base64," + b64(PNG), 0, max_bytes=1000)
    assert (image.data, image.media_type) == (PNG, MediaType.PNG)


@pytest.mark.parametrize(
    ("text", "status", "kind"),
    [
        ("", 422, "invalid_field"),
        ("data:image/png;base64,", 422, "invalid_field"),
        ("not base64!", 422, "invalid_field"),
        ("QUJ", 422, "invalid_field"),  # no padding
        ("QU JD", 422, "invalid_field"),  # whitespace is not base64
        ("QUJD\n", 422, "invalid_field"),
        ("QQ==QUJD", 422, "invalid_field"),  # padding in the middle
        ("é" * 8, 422, "invalid_field"),
        (b64(b"%PDF-1.7 ..."), 415, "unsupported_media_type"),
        (b64(b"hello"), 415, "unsupported_media_type"),
        (b64(PNG + bytes(2000)), 413, "upload_too_large"),
    ],
)
def test_each_bad_image_is_refused_naming_its_index(text: str, status: int, kind: str) -> None:
    with pytest.raises(GatewayError) as refused:
        decode_images([b64(PNG), text], max_bytes=1000)
    assert refusal(refused) == (status, kind, 1)


async def _chunks(count: int, size: int, pulled: list[int]) -> AsyncIterator[bytes]:
    for _ in range(count):
        pulled.append(size)
        yield b"x" * size


async def test_the_body_is_refused_as_soon_as_it_passes_the_limit() -> None:
    pulled: list[int] = []
    with pytest.raises(GatewayError) as refused:
        await read_body(_chunks(100, 100, pulled), None, max_bytes=250)
    assert refusal(refused) == (413, "body_too_large", None)
    assert len(pulled) == 3
    with pytest.raises(GatewayError) as declared:
        await read_body(_chunks(1, 1, pulled := []), "251", max_bytes=250)
    assert refusal(declared)[:2] == (413, "body_too_large") and pulled == []
    assert await read_body(_chunks(2, 100, []), "200", max_bytes=250) == b"x" * 200
    with pytest.raises(GatewayError) as malformed:
        await read_body(_chunks(1, 1, []), "ten", max_bytes=250)
    assert malformed.value.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"[]",
        b'"abc"',
        b"{}",
        b'{"image": "QUJD"}',
        b'{"image_data": 1}',
        b'{"image_data": [1]}',
        b'{"image_data": "QUJD", "detail": "true"}',
        b'{"image_data": "QUJD", "detail": 1}',
    ],
)
def test_a_body_not_of_the_shape_is_422(body: bytes) -> None:
    with pytest.raises(GatewayError) as refused:
        parse_request(body)
    assert refusal(refused) == (422, "invalid_field", None)


def test_the_images_of_a_request_and_their_count() -> None:
    assert images_of(parse_request(b'{"image_data": "QUJD"}'), max_images=2) == ["QUJD"]
    request = parse_request(b'{"image_data": ["QUJD", "QQ=="], "detail": true, "x": 1}')
    assert request.detail and images_of(request, max_images=2) == ["QUJD", "QQ=="]
    with pytest.raises(GatewayError) as too_many:
        images_of(request, max_images=1)
    assert refusal(too_many) == (413, "too_many_images", None)
    with pytest.raises(GatewayError) as empty:
        images_of(parse_request(b'{"image_data": []}'), max_images=2)
    assert refusal(empty) == (422, "invalid_field", None)


@pytest.mark.parametrize(
    ("job", "pages", "expected"),
    [
        ("pending", [], TaskState.PENDING),
        ("pending", ["pending", "publishing"], TaskState.PENDING),
        ("pending", ["queued", "pending"], TaskState.STARTED),
        ("queued", ["queued"], TaskState.STARTED),
        ("queued", ["done", "queued"], TaskState.STARTED),
        ("completed", ["done"], TaskState.SUCCESS),
        ("failed", ["done", "failed"], TaskState.FAILURE),
        ("cancelled", ["cancelled"], TaskState.FAILURE),
    ],
)
def test_status_words(job: str, pages: list[str], expected: TaskState) -> None:
    assert task_state(job, pages) == expected


def test_failure_reasons() -> None:
    failed = [PageView(1, "done", "a"), PageView(2, "failed", error="engine crashed")]
    assert failure_reason("cancelled", None, failed) == "cancelled"
    assert failure_reason("failed", "rendering failed: x", failed) == "rendering failed: x"
    assert failure_reason("failed", None, failed) == "page 2: engine crashed"


def test_results_keep_the_shape_and_order_sent() -> None:
    pages = [PageView(n, "done", f"t{n}") for n in (3, 1, 2, 4)]
    assert page_images([1, 2, 1]) == [0, 1, 1, 2]
    assert shape_result(pages, [1, 2, 1], as_list=True) == ["t1", "t2\ft3", "t4"]
    assert shape_result(pages[:1], [1], as_list=False) == "t3"
    assert shape_result([PageView(1, "done", None)], [1], as_list=True) == [""]
    two_frames = [PageView(1, "done", "a"), PageView(2, "done", "b")]
    assert shape_result(two_frames, [2], as_list=False) == "a\fb"


def test_detail_pages_name_their_image_and_outline_their_boxes() -> None:
    boxes = [{"bbox": [1, 2, 11, 12], "text": "hi", "confidence": 0.5}]
    pages = [PageView(2, "done", "b", boxes), PageView(1, "done", "a", None)]
    detail = detail_pages(pages, [1, 1])
    assert [(p.image, p.text) for p in detail] == [(0, "a"), (1, "b")]
    assert detail[1].boxes[0].polygon == [(1, 2), (11, 2), (11, 12), (1, 12)]
    assert detail[0].boxes == []

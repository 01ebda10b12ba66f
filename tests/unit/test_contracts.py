"""The broker messages: the page fast path agrees byte for byte with its model, results validate."""

from __future__ import annotations

import base64
import os
import random
import socket
import uuid

import orjson
import pytest
from pydantic import ValidationError

from ocr_gateway.messaging.contracts import (
    PageMessage,
    ResultMessage,
    TextBox,
    encode_page_message,
    page_message_id,
)

JOB = uuid.UUID("0b0e8f4e-5c1a-4f7e-9d55-3a3f1c2b7e01")


def _pngs() -> list[bytes]:
    """Bodies whose base64 uses every alphabet character, `+` and `/` included, and all three
    padding cases."""
    rng = random.Random(10)
    return [
        b"\x89PNG\r\n\x1a\n",
        b"\xfb\xff\xbf" * 50,  # encodes to "+/+/" runs
        *(rng.randbytes(size) for size in (1, 2, 3, 1000, 1001, 1002, 200_000)),
    ]


@pytest.mark.parametrize("png", _pngs(), ids=lambda png: f"{len(png)}B")
@pytest.mark.parametrize("page_number", [1, 7, 2_000, 2**40])
def test_encode_page_message_is_the_models_json_byte_for_byte(png: bytes, page_number: int) -> None:
    job_id = uuid.uuid4()
    image_base64 = base64.b64encode(png).decode("ascii")
    fast = encode_page_message(job_id, page_number, png)

    model = PageMessage(job_id=job_id, page_number=page_number, image_base64=image_base64)
    assert fast == model.model_dump_json().encode()
    assert fast == orjson.dumps(
        {"job_id": str(job_id), "page_number": page_number, "image_base64": image_base64}
    )

    decoded = PageMessage.model_validate_json(fast)
    assert decoded == model
    assert decoded.image_base64 is not None
    assert base64.b64decode(decoded.image_base64, validate=True) == png


def test_a_page_message_with_later_optional_fields_still_reads_as_today() -> None:
    body = orjson.dumps(
        {
            "job_id": str(JOB),
            "page_number": 3,
            "image_base64": "aGVsbG8=",
            "task": "ocr",
            "engine_hint": "fast",
        }
    )
    message = PageMessage.model_validate_json(body)
    assert (message.job_id, message.page_number, message.image_base64) == (JOB, 3, "aGVsbG8=")
    assert message.image_url is None
    assert message.message_id == page_message_id(JOB, 3) == f"{JOB}:3"


# Today's inline body, written out by hand: a change to the encoder must not move a byte of it.
INLINE_BODY = (
    b'{"job_id":"0b0e8f4e-5c1a-4f7e-9d55-3a3f1c2b7e01","page_number":12,'
    b'"image_base64":"iVBORw0KGgo="}'
)


def test_an_inline_message_is_byte_for_byte_what_it_was() -> None:
    png = b"\x89PNG\r\n\x1a\n"
    assert encode_page_message(JOB, 12, png) == INLINE_BODY
    tables = encode_page_message(JOB, 12, png, tables=True)
    assert tables == INLINE_BODY[:-1] + b',"tables":true}'


URLS = [
    "http://127.0.0.1:8000/api/v1/page-images/x/1?expires=1&signature=ab",
    # A presigned S3 URL: `%`, `&`, `=` and `/`, which JSON leaves as they are.
    "https://s3.example.com/bucket/p/0b0e8f4e/1.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ff",
    # What no gateway builds, but the encoder still escapes as the model does.
    'http://h/a"b\\c\u00e9\u2028?q=\x01',
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("tables", [False, True])
def test_a_url_message_is_the_models_json_byte_for_byte(url: str, tables: bool) -> None:
    fast = encode_page_message(JOB, 7, image_url=url, tables=tables)
    model = PageMessage(job_id=JOB, page_number=7, image_url=url, tables=tables)
    assert fast == model.model_dump_json().encode()
    expected: dict[str, object] = {"job_id": str(JOB), "page_number": 7, "image_url": url}
    if tables:
        expected["tables"] = True
    assert orjson.loads(fast) == expected
    assert b"image_base64" not in fast
    decoded = PageMessage.model_validate_json(fast)
    assert decoded == model
    assert (decoded.image_url, decoded.image_base64) == (url, None)


def test_the_encoder_takes_exactly_one_image() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        encode_page_message(JOB, 1)
    with pytest.raises(ValueError, match="exactly one"):
        encode_page_message(JOB, 1, b"png", image_url="http://h/1.png")


@pytest.mark.parametrize(
    "fields",
    [
        {"job_id": "not-a-uuid", "page_number": 1, "image_base64": "eA=="},
        {"job_id": str(JOB), "page_number": 0, "image_base64": "eA=="},
        {"job_id": str(JOB), "page_number": -1, "image_base64": "eA=="},
        {"job_id": str(JOB), "page_number": 1, "image_base64": ""},
        {"job_id": str(JOB), "page_number": 1},
        {"page_number": 1, "image_base64": "eA=="},
        {"job_id": str(JOB), "page_number": 1, "image_base64": "eA==", "image_url": "http://h/1"},
        {"job_id": str(JOB), "page_number": 1, "image_url": ""},
        {"job_id": str(JOB), "page_number": 1, "image_url": "s3://bucket/1.png"},
        {"job_id": str(JOB), "page_number": 1, "image_url": "file:///etc/passwd"},
        {"job_id": str(JOB), "page_number": 1, "image_url": "http://h/" + "x" * 9000},
        {"job_id": str(JOB), "page_number": 1, "image_base64": None},
    ],
)
def test_a_bad_page_message_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PageMessage.model_validate_json(orjson.dumps(fields))


def test_result_message_strips_nul_characters_from_text_and_error() -> None:
    result = ResultMessage(
        job_id=JOB, page_number=1, status="failed", text="a\x00b\x00", error="bad\x00 page"
    )
    assert result.text == "ab"
    assert result.error == "bad page"
    parsed = ResultMessage.model_validate_json(
        orjson.dumps({"job_id": str(JOB), "page_number": 2, "status": "done", "text": "\x00x\x00y"})
    )
    assert parsed.text == "xy"
    assert parsed.error is None


@pytest.mark.parametrize("status", ["done", "failed"])
def test_result_message_takes_done_and_failed(status: str) -> None:
    body = orjson.dumps({"job_id": str(JOB), "page_number": 1, "status": status})
    assert ResultMessage.model_validate_json(body).status == status


@pytest.mark.parametrize("status", ["DONE", "ok", "", None, 1])
def test_result_message_refuses_any_other_status(status: object) -> None:
    body = orjson.dumps({"job_id": str(JOB), "page_number": 1, "status": status})
    with pytest.raises(ValidationError):
        ResultMessage.model_validate_json(body)


@pytest.mark.parametrize(
    "fields",
    [
        {"job_id": "nope", "page_number": 1, "status": "done"},
        {"job_id": str(JOB), "page_number": 0, "status": "done"},
        {"job_id": str(JOB), "status": "done"},
        {"job_id": str(JOB), "page_number": 1, "status": "done", "boxes": [{"text": "no bbox"}]},
    ],
)
def test_a_bad_result_message_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ResultMessage.model_validate_json(orjson.dumps(fields))


def test_result_message_ignores_extra_fields_and_keeps_extra_box_fields() -> None:
    body = orjson.dumps(
        {
            "job_id": str(JOB),
            "page_number": 4,
            "status": "done",
            "text": "hi",
            "detections": [{"rows": 2}],
            "engine": "rapidocr",
            "boxes": [{"bbox": [1, 2, 3, 4], "text": "hi", "confidence": 0.5, "angle": 90}],
        }
    )
    result = ResultMessage.model_validate_json(body)
    assert "detections" not in result.model_dump() and "engine" not in result.model_dump()
    assert result.boxes is not None
    assert result.boxes[0].bbox == (1.0, 2.0, 3.0, 4.0)
    assert result.boxes[0].model_dump()["angle"] == 90


def test_result_encode_leaves_out_the_fields_that_are_none() -> None:
    page = PageMessage(job_id=JOB, page_number=5, image_base64="eA==")
    failed = ResultMessage.failed(page, "the engine\x00 exploded")
    assert orjson.loads(failed.encode()) == {
        "job_id": str(JOB),
        "page_number": 5,
        "status": "failed",
        "text": "",
        "error": "the engine exploded",
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    assert failed.message_id == page.message_id == f"{JOB}:5"

    done = ResultMessage.done(page, "text", [{"bbox": [0, 0, 10, 5], "text": "text"}])
    assert orjson.loads(done.encode()) == {
        "job_id": str(JOB),
        "page_number": 5,
        "status": "done",
        "text": "text",
        "boxes": [{"bbox": [0.0, 0.0, 10.0, 5.0], "text": "text"}],
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    assert ResultMessage.model_validate_json(done.encode()) == done


def test_text_box_defaults() -> None:
    box = TextBox.model_validate({"bbox": [0, 0, 1, 1]})
    assert (box.text, box.confidence) == ("", None)


def test_a_result_without_worker_from_an_older_worker_stays_valid() -> None:
    body = orjson.dumps({"job_id": str(JOB), "page_number": 1, "status": "done", "text": "x"})
    assert ResultMessage.model_validate_json(body).worker is None
    named = orjson.dumps({"job_id": str(JOB), "page_number": 1, "status": "done", "worker": "h:1"})
    assert ResultMessage.model_validate_json(named).worker == "h:1"
    with pytest.raises(ValidationError):
        ResultMessage.model_validate_json(
            orjson.dumps(
                {"job_id": str(JOB), "page_number": 1, "status": "done", "worker": "w" * 201}
            )
        )

"""Error answers over a real server: the connection stays usable, or the answer says it won't.

The app is served by uvicorn on a loopback port, and requests go one after another over one
raw socket, so a connection the server dropped shows as an error on the next request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from ocr_gateway.api.errors import install_error_handlers
from ocr_gateway.core.settings import Settings
from tests.support.tcp import RawConnection, multipart_file, served


@pytest.fixture
async def connection(app: FastAPI) -> AsyncIterator[RawConnection]:
    async with served(app) as port:
        raw = await RawConnection.open(port)
        yield raw
        await raw.close()


async def test_a_refused_upload_leaves_the_connection_usable(connection: RawConnection) -> None:
    body, content_type = multipart_file(b"not a document at all" * 100, "junk.pdf")
    refused = await connection.request(
        "POST", "/api/v1/ocrpdf", body, {"Content-Type": content_type}
    )
    assert refused.status == 415
    assert refused.headers.get("content-type") == "application/json"
    assert refused.headers.get("connection") != "close"
    for _ in range(3):
        health = await connection.request("GET", "/api/v1/health")
        assert health.status == 200


async def test_an_upload_refused_before_its_body_says_connection_close(
    app: FastAPI, settings: Settings
) -> None:
    """A Content-Length over the cap is refused before the body is read, and the body is not
    read afterwards either (it may be huge): the answer says `Connection: close`. The client
    here watches for an early answer while it sends, as curl does."""
    oversized = b"%PDF-1.7\n" + b"0" * (settings.max_upload_bytes + 256 * 1024)
    body, content_type = multipart_file(oversized, "big.pdf")
    async with served(app) as port:
        raw = await RawConnection.open(port)
        try:
            refused = await raw.request_early_answer(
                "POST", "/api/v1/ocrpdf", body, {"Content-Type": content_type}
            )
        finally:
            await raw.close()
    assert refused.status == 413
    assert refused.headers.get("connection") == "close"


async def test_an_unexpected_error_is_json_and_the_connection_survives() -> None:
    """A route that raises: the answer is the JSON 500, and the same connection serves the next
    request (the server is not left to drop it)."""
    broken = FastAPI()
    install_error_handlers(broken)

    @broken.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a fault inside the gateway")

    @broken.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    async with served(broken) as port:
        raw = await RawConnection.open(port)
        try:
            for _ in range(3):
                failed = await raw.request("GET", "/boom")
                assert failed.status == 500
                assert failed.headers.get("content-type") == "application/json"
                assert b'"internal_error"' in failed.body
                assert failed.headers.get("connection") != "close"
                assert (await raw.request("GET", "/fine")).status == 200
        finally:
            await raw.close()

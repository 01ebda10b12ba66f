"""A page message's image: its inline `image_base64`, or the PNG fetched from its `image_url`.

With `MESSAGE_IMAGES=url` the image does not travel through RabbitMQ; the worker GETs it from
the URL in the message (presigned S3, or the gateway's signed page URL), under a timeout for
the whole GET and a cap on its size. What a failed fetch does to the page (docs/worker.md):
- the URL answers, but refuses (403: a bad or expired signature; 404: the page is gone), or
  the image is over `IMAGE_FETCH_MAX_BYTES`: asking again gets the same answer, so the page's
  result is `failed` with the reason;
- the URL does not answer (connection refused, timeout, 5xx, 429): the gateway or S3 may be
  restarting, so the page goes back to the queue after a pause, as often as it takes.
"""

from __future__ import annotations

import asyncio

import httpx
import pybase64

from ocr_gateway.messaging.contracts import PageMessage

# How much of a refusal's body goes into the page's error (a JSON reason, or S3's XML).
REASON_BYTES = 300
# Statuses that a later try may not meet: the server is overloaded, restarting, or says wait.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ImageFetchFailed(Exception):
    """The image at `image_url` could not be had; `transient` says whether to try again."""

    def __init__(self, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


class PageImages:
    """Hands the OCR call a page's image as base64, fetching it when the message has a URL."""

    def __init__(self, *, timeout_s: float, max_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        # No redirects: a presigned or signed URL names the object itself.
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def image_base64(self, page: PageMessage) -> str:
        """The page's image as base64 (what the OCR processes decode)."""
        if page.image_base64 is not None:
            return page.image_base64
        assert page.image_url is not None, "a page message has one of the two"
        png = await self.fetch(page.image_url)
        return pybase64.b64encode(png).decode("ascii")

    async def fetch(self, url: str) -> bytes:
        """The body at `url`; raises `ImageFetchFailed`."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._get(url)
        except TimeoutError as exc:
            raise ImageFetchFailed(
                f"page image not fetched in {self.timeout_s:g} s", transient=True
            ) from exc
        except httpx.TransportError as exc:
            raise ImageFetchFailed(
                f"page image not fetched: {type(exc).__name__}: {exc}", transient=True
            ) from exc

    async def _get(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                reason = await _reason(response)
                raise ImageFetchFailed(
                    f"page image refused: HTTP {response.status_code} {reason}".rstrip(),
                    transient=response.status_code in TRANSIENT_STATUSES,
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise self._too_large()
                chunks.append(chunk)
            return b"".join(chunks)

    def _too_large(self) -> ImageFetchFailed:
        return ImageFetchFailed(
            f"page image over IMAGE_FETCH_MAX_BYTES ({self.max_bytes} bytes)", transient=False
        )


async def _reason(response: httpx.Response) -> str:
    """The start of a refusal's body, on one line."""
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= REASON_BYTES:
            break
    return " ".join(body[:REASON_BYTES].decode("utf-8", "replace").split())

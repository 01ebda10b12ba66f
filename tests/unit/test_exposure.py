"""Secure by default: off the loopback, the API needs an admin key and, unless open clients are
allowed on purpose, client keys."""

from __future__ import annotations

from typing import Any

import pytest

from ocr_gateway.core.settings import Settings
from ocr_gateway.tenants.exposure import exposure_refusal, is_loopback


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.53", "127.255.255.254", "::1", "[::1]", "localhost", "LOCALHOST"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    assert exposure_refusal(settings(), host) is None


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "example.org", "128.0.0.1", "[::]"]
)
def test_other_hosts_are_reachable_from_outside(host: str) -> None:
    assert not is_loopback(host)


def test_an_ipv4_mapped_loopback_is_a_loopback() -> None:
    assert is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("::ffff:10.0.0.1")


@pytest.mark.parametrize("admin_key", [None, "", "   "])
def test_off_the_loopback_an_admin_key_is_required(admin_key: str | None) -> None:
    refusal = exposure_refusal(settings(admin_api_key=admin_key, client_auth="api_key"), "0.0.0.0")
    assert refusal is not None
    assert "OCR_GATEWAY_ADMIN_API_KEY" in refusal and "\n" not in refusal


def test_off_the_loopback_open_clients_must_be_allowed_on_purpose() -> None:
    refusal = exposure_refusal(settings(admin_api_key="k" * 32), "0.0.0.0")
    assert refusal is not None
    assert "OCR_GATEWAY_CLIENT_AUTH=off" in refusal and "\n" not in refusal
    allowed = settings(admin_api_key="k" * 32, allow_open_clients=True)
    assert exposure_refusal(allowed, "0.0.0.0") is None
    keyed = settings(admin_api_key="k" * 32, client_auth="api_key")
    assert exposure_refusal(keyed, "::") is None

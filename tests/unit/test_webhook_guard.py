"""The SSRF guard: which addresses a callback may reach, the allow list, malformed URLs, and
the pinned target a delivery connects to."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from ocr_gateway.core.settings import Settings
from ocr_gateway.webhooks.guard import (
    MAX_URL_CHARS,
    AllowList,
    CallbackRefused,
    check_callback_url,
    check_target,
    parse_callback_url,
    refusal_reason,
)


def _settings(tmp_path: Path, allow: str = "") -> Settings:
    return Settings(
        files_dir=tmp_path / "files",
        temp_dir=tmp_path / "temp",
        logs_dir=tmp_path / "logs",
        webhook_allow_hosts=allow,
        _env_file=None,
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.8.7", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("192.0.2.10", "private"),  # documentation range
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_with_their_reason(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None and reason in found, (address, found)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_names_addresses_and_ranges() -> None:
    allowed = AllowList.parse(" Hooks.Internal. , 127.0.0.1,10.20.0.0/16,, [::1], fd00::/8 ")
    assert allowed.names == frozenset({"hooks.internal"})
    assert allowed.allows_name("HOOKS.internal")
    assert not allowed.allows_name("evil.hooks.internal")
    for address in ("127.0.0.1", "10.20.3.4", "::1", "fd00::5"):
        assert allowed.allows_address(ipaddress.ip_address(address)), address
    for address in ("127.0.0.2", "10.21.0.1", "::2"):
        assert not allowed.allows_address(ipaddress.ip_address(address)), address
    assert AllowList.parse("") == AllowList(frozenset(), ())


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://127.0.0.1:6379/", "http or https"),
        ("example.com/hook", "http or https"),
        ("http://[::1/hook", "malformed"),
        ("http:///hook", "no valid host"),
        ("http://exa mple.com/", "no valid host"),
        ("http://host\x00.com/", "malformed"),
        ("http://example.com:99999/", "out of range"),
        ("http://example.com/" + "a" * MAX_URL_CHARS, "over 2048"),
    ],
)
def test_malformed_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(CallbackRefused) as refused:
        parse_callback_url(url)
    assert words in refused.value.detail
    assert refused.value.status_code == 422


async def test_private_hosts_are_refused_unless_allowed(tmp_path: Path) -> None:
    closed, open_ = _settings(tmp_path), _settings(tmp_path, "127.0.0.1,localhost")
    for url in (
        "http://127.0.0.1:8080/h",
        "http://[::1]/h",
        "http://localhost/h",
        "http://2130706433/h",
        "http://10.0.0.1/h",
        "https://169.254.169.254/latest",
    ):
        with pytest.raises(CallbackRefused) as refused:
            await check_callback_url(url, closed)
        assert "may not reach" in refused.value.detail, url
    assert await check_callback_url("http://127.0.0.1:8080/h", open_) == "http://127.0.0.1:8080/h"
    assert await check_callback_url("http://localhost:8080/h", open_) == "http://localhost:8080/h"
    with pytest.raises(CallbackRefused):
        await check_callback_url("http://10.0.0.1/h", open_)


async def test_the_target_pins_the_checked_address_and_keeps_the_name(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "localhost,127.0.0.0/8")
    target = await check_target("https://user:pw@LocalHost:8443/a/b?c=d", settings)
    assert target.address in ("127.0.0.1", "::1")
    assert target.url.startswith("https://user:pw@") and target.url.endswith(":8443/a/b?c=d")
    assert target.address in target.url
    assert target.host_header == "localhost:8443"
    assert target.extensions == {"sni_hostname": "localhost"}
    plain = await check_target("http://127.0.0.1/x", settings)
    assert (plain.url, plain.host_header, plain.extensions) == (
        "http://127.0.0.1/x",
        "127.0.0.1",
        {},
    )

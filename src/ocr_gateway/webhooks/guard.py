"""The SSRF guard: a callback URL must be http(s) and reach a public address (or an allowed
host), checked when the job is submitted and again before every delivery.

A host name is resolved, and every address it resolves to must pass: one private address
among public ones is enough to refuse it. At delivery the sender connects to the address that
was checked (`Target`), never to a second resolution of the name, so DNS that answers a public
address to the check and a private one to the connection (rebinding) gains nothing.

`OCR_GATEWAY_WEBHOOK_ALLOW_HOSTS` exempts host names (as written in the URL, exactly),
addresses and CIDR ranges: a receiver on the operator's own network, or the tests' receiver on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.core.settings import Settings

MAX_URL_CHARS = 2048
# A resolver that hangs must not hold an upload (or a delivery's lease) for long.
RESOLVE_TIMEOUT_S = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: credentials live there. The first is link-local anyway, the
# second a unique-local address, and Alibaba's sits in the shared (CGNAT) range; each is named
# so that the refusal says what it is.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# NAT64 prefixes (RFC 6052, RFC 8215): the IPv4 address they embed is the one reached.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class CallbackRefused(InvalidField):
    """The URL is malformed, of another scheme, too long, or reaches an address not allowed."""


class CallbackUnresolved(InvalidField):
    """The host name does not resolve (now): a refusal at submit, a retry at delivery."""


def refusal_reason(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to `address`, or None if it is a public address."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal_reason(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "not a public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True, slots=True)
class AllowList:
    """Host names, addresses and CIDR ranges exempt from the guard."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """From `OCR_GATEWAY_WEBHOOK_ALLOW_HOSTS`: comma-separated, blanks ignored. An entry
        that is an address or a CIDR range is one; any other is a host name."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.names

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@functools.lru_cache(maxsize=8)
def allow_list(text: str) -> AllowList:
    return AllowList.parse(text)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery connects: the checked address, with the URL's host name kept for the
    `Host` header and, over https, for SNI and the certificate check."""

    url: str  # the callback URL with its host replaced by the address
    address: str
    host_header: str
    tls_hostname: str | None

    @property
    def extensions(self) -> dict[str, Any]:
        return {"sni_hostname": self.tls_hostname} if self.tls_hostname else {}


def parse_callback_url(url: str) -> httpx.URL:
    """The URL parsed, or CallbackRefused: http(s), a host, a valid port, at most 2,048
    characters."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url is over {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise CallbackRefused(f"callback_url is malformed: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise CallbackRefused("callback_url must be an http or https URL")
    host = parsed.raw_host.decode("ascii")
    if not host or "%" in host:
        raise CallbackRefused("callback_url is malformed: it has no valid host")
    if port is not None and not 0 < port < 65536:
        raise CallbackRefused(f"callback_url is malformed: port {port} is out of range")
    return parsed


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an address literal: itself), in the resolver's order."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise CallbackUnresolved(f"callback_url's host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise CallbackUnresolved(f"callback_url's host {host!r} does not resolve")
    return addresses


async def check_target(url: str, settings: Settings) -> Target:
    """Parse, resolve and check the URL; the address to connect to, or InvalidField saying
    why not (CallbackUnresolved when the name does not resolve)."""
    parsed = parse_callback_url(url)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded: what DNS, SNI and `Host` carry
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    allowed = allow_list(settings.webhook_allow_hosts)
    addresses = await resolve(host, port)
    if not allowed.allows_name(host):
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None and not allowed.allows_address(address):
                shown = host if host == str(address) else f"{host} ({address})"
                raise CallbackRefused(
                    f"callback_url may not reach {shown}: {reason}"
                    " (OCR_GATEWAY_WEBHOOK_ALLOW_HOSTS lists the exceptions)"
                )
    pinned = str(addresses[0])
    return Target(
        url=str(parsed.copy_with(host=pinned)),
        address=pinned,
        host_header=parsed.netloc.decode("ascii"),
        tls_hostname=host if parsed.scheme == "https" else None,
    )


async def check_callback_url(url: str, settings: Settings) -> str:
    """The URL itself when a webhook may be sent to it; else InvalidField (422) saying why."""
    await check_target(url, settings)
    return url

"""Secure by default off the loopback: the API refuses to start where anyone on the network
could reach an open admin route or act as any tenant."""

from __future__ import annotations

import ipaddress

from ocr_gateway.core.settings import Settings

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether binding to `host` listens on this machine only: 127.0.0.0/8, ::1 or localhost.
    Any other name, `0.0.0.0`, `::` or an empty host is taken as reachable from outside."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def exposure_refusal(settings: Settings, host: str) -> str | None:
    """Why the API must not listen on `host` with these settings, in one line; None if it may."""
    if is_loopback(host):
        return None
    admin_key = settings.admin_api_key
    if admin_key is None or not admin_key.get_secret_value().strip():
        return (
            f"refusing to listen on {host!r} without OCR_GATEWAY_ADMIN_API_KEY: every admin"
            " route would be open to the network (set the key, or bind to 127.0.0.1)"
        )
    if settings.client_auth == "off" and not settings.allow_open_clients:
        return (
            f"refusing to listen on {host!r} with OCR_GATEWAY_CLIENT_AUTH=off: anyone could act"
            " as any tenant (set OCR_GATEWAY_CLIENT_AUTH=api_key, or"
            " OCR_GATEWAY_ALLOW_OPEN_CLIENTS=true if that is meant)"
        )
    return None

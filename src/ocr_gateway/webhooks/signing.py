"""Standard Webhooks signatures (standardwebhooks.com): what a receiver checks.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the tenant's
secret `whsec_<base64>` decoded; the signature is HMAC-SHA256, sent base64-encoded as
`webhook-signature: v1,<signature>`. Pure functions: the sender calls them at each attempt,
with the tenant's secret as it is then and the attempt's own timestamp.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
CONTENT_TYPE = "application/json"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>`."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Every header of a delivery that its body and signature depend on."""
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The body of a delivery, from its stored payload: `type`, `timestamp`, `data`, in that
    order (the stored JSONB keeps keys in its own order). The same payload always gives the
    same bytes, so every retry sends the same body."""
    ordered = {key: payload[key] for key in ("type", "timestamp", "data")}
    ordered.update({key: value for key, value in payload.items() if key not in ordered})
    return orjson.dumps(ordered)

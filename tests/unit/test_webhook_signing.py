"""Webhook signatures: the Standard Webhooks scheme, checked by the `standardwebhooks` package
(an implementation that shares nothing with ours) and by the spec's own test vector."""

from __future__ import annotations

import base64
import secrets
import time

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ocr_gateway.webhooks.signing import encode_body, secret_key, sign, signed_headers

# The example of the Standard Webhooks spec (and of its reference libraries' tests).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def test_the_spec_example_signs_to_the_spec_signature() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_signed_delivery_verifies_with_the_standardwebhooks_package() -> None:
    secret = _new_secret()
    payload = {
        "data": {"job_id": "j", "tenant": "acme", "status": "completed"},
        "type": "job.completed",
        "timestamp": "2026-12-02T18:23:47.123456Z",
    }
    body = encode_body(payload)
    headers = signed_headers(secret, "msg_0123abcd", int(time.time()), body)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == payload


def test_a_changed_body_id_timestamp_or_secret_fails_verification() -> None:
    secret = _new_secret()
    body = b'{"type":"job.failed"}'
    now = int(time.time())
    headers = signed_headers(secret, "msg_1", now, body)
    verifier = Webhook(secret)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, {**headers, "webhook-timestamp": str(now - 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook(_new_secret()).verify(body, headers)


def test_the_key_is_the_decoded_secret_with_or_without_padding() -> None:
    raw = secrets.token_bytes(32)
    encoded = base64.b64encode(raw).decode()
    assert secret_key("whsec_" + encoded) == raw
    assert secret_key("whsec_" + encoded.rstrip("=")) == raw


def test_the_body_is_type_timestamp_data_and_the_same_bytes_each_time() -> None:
    # As JSONB returns it: its own key order.
    stored = {"data": {"job_id": "j", "page_number": 2}, "type": "page.done", "timestamp": "t"}
    body = encode_body(stored)
    assert list(orjson.loads(body)) == ["type", "timestamp", "data"]
    assert body == encode_body(dict(reversed(list(stored.items()))))

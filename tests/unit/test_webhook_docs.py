"""The receiver example of docs/webhooks.md (and the README) runs, as written, against a
delivery signed by the gateway."""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocr_gateway.webhooks.signing import encode_body, signed_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
MARKER = "<!-- receiver-example:"


def _example() -> str:
    text = DOC.read_text()
    after = text[text.index(MARKER) :]
    found = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert found is not None, "docs/webhooks.md has the receiver example after its marker"
    return found.group(1)


def test_the_example_is_ten_lines_or_so() -> None:
    assert len(_example().strip().splitlines()) <= 11


def test_the_documented_receiver_verifies_a_signed_delivery_and_refuses_a_forged_one() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    body = encode_body({"type": "job.completed", "timestamp": "t", "data": {"job_id": "j"}})
    headers = signed_headers(secret, "msg_abc", int(time.time()), body)
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body.replace(b"completed", b"failed"))
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    assert not verify(other, headers, body)
    stale = signed_headers(secret, "msg_abc", int(time.time()) - 3600, body)
    assert not verify(secret, stale, body)
    # Several signatures (during a secret rotation on the receiver's side): any one may match.
    several = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    assert verify(secret, several, body)

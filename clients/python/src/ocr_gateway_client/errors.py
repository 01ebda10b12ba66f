"""Typed errors. Each refusal from the gateway carries its JSON reason:
`{"error": "<kind>", "detail": "<human text>"}` as `.error` and `.detail`."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ocr_gateway_client.models import Job


class GatewayError(Exception):
    """The gateway refused a request or failed it. `status_code` is the HTTP status, `error` the
    gateway's kind of error (`not_found`, `conflict`, ...), `detail` its explanation, and `body`
    the whole JSON answer (a refused batch adds the file's `index`)."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: Any,
        *,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(f"{status_code} {error}: {detail}")
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.body = body if body is not None else {"error": error, "detail": detail}
        self.headers = headers or httpx.Headers()

    @property
    def index(self) -> int | None:
        """For a refused batch, the refused file's place in it, counted from 0."""
        index = self.body.get("index")
        return index if isinstance(index, int) else None


class BadRequest(GatewayError):
    """400: the request is not one the route takes (a malformed upload body, a bad cursor)."""


class Unauthorized(GatewayError):
    """401: the API key is missing or wrong."""


class Forbidden(GatewayError):
    """403: the API key is valid, but `tenant` names another tenant than the key's."""


class JobNotFound(GatewayError):
    """404: the job (or its page, download or `/images` image) does not exist, was deleted,
    or is another tenant's."""


class JobConflict(GatewayError):
    """409: not possible in the current state: a job's result or download before the job
    ended, an image's thumbnail while it is PROCESSING or after it FAILED."""


class PayloadTooLarge(GatewayError):
    """413: too large a file, document or page, or too many files in one batch."""


class UnsupportedMediaType(GatewayError):
    """415: a file is not a type the gateway takes (by its content, not its name)."""


class InvalidRequest(GatewayError):
    """422: a parameter is out of range, or a document cannot be read."""


class TooManyRequests(GatewayError):
    """429: a limit of the tenant would be exceeded (`body["limit"]` names it); `retry_after`
    says in how many seconds to retry."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        return float(value) if value and value.isdigit() else None


class ServiceUnavailable(GatewayError):
    """503: the gateway cannot take this now; `retry_after` says in how many seconds to retry."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        return float(value) if value and value.isdigit() else None


class ServerError(GatewayError):
    """Any other 5xx: the gateway hit an unexpected error."""


class EventStreamLost(Exception):
    """The event stream could not be reopened after `max_reconnects` tries in a row."""


class WaitTimeout(TimeoutError):
    """`wait()` ran out of time before the job finished; `job` is the last state seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} after {timeout:g} s")
        self.job = job


_BY_STATUS: dict[int, type[GatewayError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: JobNotFound,
    409: JobConflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_from_response(response: httpx.Response) -> GatewayError:
    """The typed error for a refusal; its body must have been read."""
    error = "http_error"
    detail: Any = response.text
    try:
        parsed = json.loads(response.content)
    except ValueError:
        parsed = None
    body = parsed if isinstance(parsed, dict) and "error" in parsed else None
    if body is not None:
        error, detail = str(body["error"]), body.get("detail")
    status = response.status_code
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else GatewayError)
    return kind(status, error, detail, body=body, headers=response.headers)

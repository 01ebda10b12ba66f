"""The gateway's one error hierarchy; the API turns each into `{"error", "detail"}`.

An error may also carry HTTP headers for its answer (a 503's `Retry-After`), and extra fields
for its JSON body (a refused batch names the file's `index`).
"""

from __future__ import annotations

from typing import Any, Self

# The body fields every error answer has; extra fields may not replace them.
BODY_FIELDS = frozenset({"error", "detail"})


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status_code = 500
    kind = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = {}
        self.fields: dict[str, Any] = {}

    def add_fields(self, **fields: Any) -> Self:
        """Add fields to the answer's JSON body, beside `error` and `detail`; return self."""
        reserved = BODY_FIELDS & fields.keys()
        if reserved:
            raise ValueError(f"an error's extra fields cannot replace {sorted(reserved)}")
        self.fields.update(fields)
        return self


class BadUpload(GatewayError):
    """The upload is malformed or cannot be processed (unreadable, encrypted, empty...)."""

    status_code = 422
    kind = "invalid_document"


class MalformedRequest(GatewayError):
    """The request itself is not what the endpoint takes (no multipart body, no `file` field)."""

    status_code = 400
    kind = "bad_request"


class UnsupportedMediaType(GatewayError):
    """The file's real type, by its magic bytes, is not one this endpoint takes."""

    status_code = 415
    kind = "unsupported_media_type"


class UploadTooLarge(GatewayError):
    """The upload exceeds `MAX_UPLOAD_BYTES`."""

    status_code = 413
    kind = "upload_too_large"


class TooManyFiles(GatewayError):
    """A batch has more files than `MAX_FILES_PER_REQUEST`."""

    status_code = 413
    kind = "too_many_files"


class TooManyPages(GatewayError):
    """The document has more pages than `MAX_PAGES`."""

    status_code = 413
    kind = "too_many_pages"


class PageTooLarge(GatewayError):
    """A page would exceed the pixel budget `MAX_PAGE_PIXELS` at the configured DPI."""

    status_code = 413
    kind = "page_too_large"


class DocumentTooLarge(GatewayError):
    """All pages together exceed the document's pixel budget `MAX_DOCUMENT_PIXELS`."""

    status_code = 413
    kind = "document_too_large"


def document_refusal(problem: str, detail: str) -> GatewayError:
    """The answer to a document's inspection `problem`: the limit errors are named by their
    `kind` (`too_many_pages`, `page_too_large`, `document_too_large`); any other problem is a
    document that cannot be read (422)."""
    for limit in (TooManyPages, PageTooLarge, DocumentTooLarge):
        if problem == limit.kind:
            return limit(detail)
    return BadUpload(detail)


class NotFound(GatewayError):
    """The job or page does not exist."""

    status_code = 404
    kind = "not_found"


class Conflict(GatewayError):
    """The request cannot be carried out in the resource's current state."""

    status_code = 409
    kind = "conflict"


class WrongState(Conflict):
    """The call is not allowed in the resource's current state; the answer names that state
    (`status`), so a client can tell what to wait for (a PATCH of boxes while OCR runs)."""

    kind = "wrong_state"

    def __init__(self, detail: str, *, status: str) -> None:
        super().__init__(f"{detail} (current status: {status})")
        self.add_fields(status=status)


class Unauthorized(GatewayError):
    """The API key is missing, unknown or revoked (a client key on an admin route too)."""

    status_code = 401
    kind = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = "Bearer"


class Forbidden(GatewayError):
    """The key is valid, but the request names another tenant (`X-Tenant-Id`)."""

    status_code = 403
    kind = "forbidden"


class InvalidField(GatewayError):
    """A header or form field is malformed: a tenant name, a callback URL (an SSRF refusal
    included), a callback event set."""

    status_code = 422
    kind = "invalid_field"


class QuotaExceeded(GatewayError):
    """A tenant's limit would be exceeded; `limit` names it, `Retry-After` says when to retry."""

    status_code = 429
    kind = "quota_exceeded"

    def __init__(self, detail: str, *, limit: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.headers["Retry-After"] = str(max(1, retry_after_s))
        self.add_fields(limit=limit)


class ServiceUnavailable(GatewayError):
    """A backing service (PostgreSQL, RabbitMQ, a process pool) cannot be used right now.

    The answer says when to try again, in whole seconds, with `Retry-After`.
    """

    status_code = 503
    kind = "service_unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.headers["Retry-After"] = str(retry_after_s)


def describe(exc: BaseException, limit: int = 500) -> str:
    """A library exception as plain text: `Type: message`, bounded in length.

    Pool processes send this, never the exception itself, across the process boundary: some
    library exceptions hold objects that cannot be pickled (PyMuPDF's SWIG pointers), and the
    job's error should name the library's own reason, not a pickling failure.
    """
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

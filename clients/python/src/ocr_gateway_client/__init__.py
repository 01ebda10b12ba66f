"""Async Python client for ocr-gateway: `AsyncGatewayClient` submits documents, follows
their jobs' progress and fetches their results (see the package's README)."""

from ocr_gateway_client._client import AsyncGatewayClient, FileInput, JobRef
from ocr_gateway_client.errors import (
    BadRequest,
    EventStreamLost,
    Forbidden,
    GatewayError,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    WaitTimeout,
)
from ocr_gateway_client.models import (
    Cancelled,
    Deleted,
    Event,
    Job,
    JobList,
    JobSummary,
    Page,
    PageState,
    ResultFormat,
    TextBox,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncGatewayClient",
    "BadRequest",
    "Cancelled",
    "Deleted",
    "Event",
    "EventStreamLost",
    "FileInput",
    "Forbidden",
    "GatewayError",
    "InvalidRequest",
    "Job",
    "JobConflict",
    "JobList",
    "JobNotFound",
    "JobRef",
    "JobSummary",
    "Page",
    "PageState",
    "PayloadTooLarge",
    "ResultFormat",
    "ServerError",
    "ServiceUnavailable",
    "TextBox",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
    "WaitTimeout",
    "__version__",
]

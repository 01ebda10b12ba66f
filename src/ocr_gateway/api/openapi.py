"""OpenAPI pieces shared by the routers."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Path

from ocr_gateway.api.schemas import ErrorResponse


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route can really give, each with the one error body."""
    return {code: {"model": ErrorResponse} for code in codes}


# What an upload can be refused for: a body that is not multipart with its file (400), too
# large a file, document or page (413), a type the route does not take (415), a document that
# cannot be read (422), and inspection that cannot run right now (503, with Retry-After).
UPLOAD_ERRORS = (400, 413, 415, 422, 503)
# A client route's refusals of the caller: 401 without a valid key (client_auth=api_key), 403
# when X-Tenant-Id names another tenant than the key's.
CALLER_ERRORS = (401, 403)
# An upload that makes jobs is held to its tenant's quotas (429 with Retry-After).
JOB_UPLOAD_ERRORS = (*CALLER_ERRORS, *UPLOAD_ERRORS, 429)


def multipart_body(description: str) -> dict[str, Any]:
    """OpenAPI for a streamed multipart body: the route reads it itself, FastAPI does not."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {
                                "type": "string",
                                "format": "binary",
                                "description": description,
                            }
                        },
                    }
                }
            },
        }
    }


JobId = Annotated[uuid.UUID, Path(description="The job's UUID")]
PageNumber = Annotated[int, Path(ge=1, le=1_000_000, description="1-based page number")]

"""Property-based fuzzing of the app's own OpenAPI schema, in-process over ASGI: no 5xx, and no
response that breaks its own schema, for a bounded number of generated requests per route."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err

from ocr_gateway.app import create_app
from ocr_gateway.core.settings import Settings
from tests.support.routes import schema_operation_count

MAX_EXAMPLES = 25
# What the gateway promises: no 5xx, and every answer is one its schema documents. Acceptance of
# schema-valid uploads is not checked: a schema cannot say "a PDF by its magic bytes".
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="session")
def api_schema(database: Settings) -> schemathesis.BaseSchema:
    """A second app on the test database, driven by Schemathesis through its own ASGI loop."""
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(database))


def test_every_operation_survives_generated_requests(
    api_schema: schemathesis.BaseSchema, database: Settings
) -> None:
    operations = []
    for result in api_schema.get_all_operations():
        if isinstance(result, Err):
            pytest.fail(
                f"the app's schema has an operation Schemathesis cannot read: {result.err()}"
            )
        operations.append(result.ok())
    assert len(operations) == schema_operation_count(create_app(database))
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(checks=CHECKS)

        check()

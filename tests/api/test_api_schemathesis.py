"""Property-based bad input: schemathesis generates requests from the app's OpenAPI document (in-process ASGI).

Every response must be a non-5xx that conforms to the document (status code, content type, body schema).
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.api_helpers import make_context, make_users

# Built at import, because schemathesis parametrises the test from the document (its fixture loader does not work
# with this pytest); the store lives in a temporary directory removed at exit.
_HOME = tempfile.TemporaryDirectory(prefix="hwnas-schemathesis-")
atexit.register(_HOME.cleanup)
_CTX = make_context(Path(_HOME.name), sse_poll_s=0.01)
AUTH = make_users(_CTX.db).a
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(context=_CTX))


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_document(case: Any) -> None:
    if case.path.endswith("/events"):  # a followed stream of a running job never ends; the snapshot is enough
        case.query = {**(case.query or {}), "follow": "false"}
    case.call_and_validate(
        headers={**(case.headers or {}), **AUTH},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )

"""Property-based hostile input: schemathesis generates requests from the app's OpenAPI document (in-process ASGI).

Three runs over every operation of the document, on one store seeded with a resource of each kind (so generated
ids sometimes hit a real row):

- positive data: every response is a non-5xx that conforms to the document (status code, content type, body);
- negative data (requests that violate the document): never a 5xx, always a documented 4xx, and never accepted
  with a 2xx (schemathesis' ``negative_data_rejection``);
- stateful: schemathesis' state machine chains operations along the links it infers from the response schemas
  (the id a POST answers is fed into the GET and POST routes of that resource), with the same checks.
"""

from __future__ import annotations

import atexit
import base64
import itertools
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from api.app import create_app
from api.auth import create_token, create_user
from store.models import Subnet, Supernet
from tests.api_helpers import make_context, make_users, tiny_onnx

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# No example database: it would be written to .hypothesis/ in the working directory.
SETTINGS = settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# Built at import, because schemathesis parametrises the tests from the document (its fixture loader does not work
# with this pytest); the store lives in a temporary directory removed at exit.
_HOME = tempfile.TemporaryDirectory(prefix="hwnas-schemathesis-")
atexit.register(_HOME.cleanup)
_CTX = make_context(Path(_HOME.name), sse_poll_s=0.01)
_USERS = make_users(_CTX.db)
AUTH = _USERS.a
APP = create_app(context=_CTX)
_MODEL = base64.b64encode(tiny_onnx()).decode()
_SCENARIOS = itertools.count()


def _seed(user_id: int, auth: dict[str, str]) -> None:
    """One resource of each kind for a user: a trained supernet, a search with a front member, a remote target
    with a queued measurement task, and an agent of that target."""
    with _CTX.db.session() as s:
        supernet = Supernet(user_id=user_id, space="ofa_mbv3_d234_e346_k357_32px", dataset="demo", strategy="sandwich",
                            config={})  # fmt: skip
        s.add(supernet)
        s.flush()
        supernet_id = supernet.id
    client = TestClient(APP, headers=auth)
    body = {"supernet_id": supernet_id, "objectives": ["accuracy", "latency:cpu-ort"], "targets": ["cpu-ort"]}
    search = client.post("/v1/searches", json=body).json()
    with _CTX.db.session() as s:
        s.add(Subnet(user_id=user_id, supernet_id=supernet_id, search_id=search["id"], arch_key="k0", arch={"r": 32},
                     predicted={"accuracy": 0.5}, pareto_rank=0))  # fmt: skip
    assert client.post("/v1/targets", json={"name": "board", "remote": True}).status_code == 201
    assert client.post("/v1/targets/board/tasks", json={"model_base64": _MODEL}).status_code == 201
    assert client.post("/v1/agents", json={"name": "lab", "targets": ["board"]}).status_code == 201


def _load(mode: GenerationMode) -> Any:
    """The app's document as schemathesis sees it, generating data of `mode` only."""
    loaded = schemathesis.openapi.from_asgi("/openapi.json", APP)
    loaded.config.generation.update(modes=[mode])
    return loaded


def _snapshot_events(case: Any) -> None:
    """A followed event stream of a running job never ends: ask for the snapshot instead."""
    if case.path.endswith("/events"):
        case.query = {**(case.query or {}), "follow": "false"}


# The dataset upload takes a zip as well as raw bytes; both are the file itself (random bytes must be refused).
schemathesis.serializer.alias("application/zip", "application/octet-stream")
_seed(_USERS.a_id, AUTH)
positive = _load(GenerationMode.POSITIVE)
negative = _load(GenerationMode.NEGATIVE)


@positive.parametrize()
@SETTINGS
def test_valid_requests_answer_as_documented(case: Any) -> None:
    _snapshot_events(case)
    case.call_and_validate(headers={**(case.headers or {}), **AUTH}, checks=CHECKS)


# Operations without parameters or body (e.g. GET /healthz) have nothing to negate; schemathesis skips them here.
@negative.parametrize()
@SETTINGS
def test_invalid_requests_are_refused_with_a_documented_4xx(case: Any) -> None:
    _snapshot_events(case)
    case.call_and_validate(headers={**(case.headers or {}), **AUTH}, checks=[*CHECKS, negative_data_rejection])


class Workflow(positive.as_state_machine()):  # type: ignore[misc]
    """Chains of calls along the inferred links, each scenario as a new user with freshly seeded resources.

    A new user per scenario keeps a scenario's responses independent of the scenarios before it (no 409 for a
    name an earlier one took), as Hypothesis requires of data generation that depends on responses.
    """

    def setup(self) -> None:
        user = create_user(_CTX.db, f"scenario-{next(_SCENARIOS)}")
        self.auth = {"Authorization": f"Bearer {create_token(_CTX.db, user.id)}"}
        _seed(user.id, self.auth)

    def before_call(self, case: Any) -> None:
        _snapshot_events(case)

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"headers": self.auth}

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)


def test_chains_of_linked_calls_answer_as_documented() -> None:
    # Generation only, as schemathesis runs its state machines: replaying a scenario on a changed store
    # (to shrink it) would not reproduce it.
    Workflow.run(settings=settings(SETTINGS, max_examples=25, stateful_step_count=8, phases=[Phase.generate]))


def test_every_route_of_the_app_is_in_the_document_schemathesis_runs() -> None:
    docs = {APP.openapi_url, APP.docs_url, APP.redoc_url, APP.swagger_ui_oauth2_redirect_url}
    routes = {
        (m, r.path)
        for r in iter_route_contexts(APP.routes)
        if r.path not in docs and getattr(r, "include_in_schema", True)  # the web view (/ui) is not in the document
        for m in r.methods or ()
    }
    operations = {(op.ok().method.upper(), op.ok().path) for op in positive.get_all_operations()}
    assert operations == routes

"""What schemathesis' negative data found (issue 25), each pinned by a focused request.

Request bodies were validated in pydantic's lax mode, so a value of the wrong JSON type that pydantic
could coerce was accepted: ``"remote": 0`` created a target (schemathesis: "Schema-violating request
accepted"), and so did ``"threads": "4"``, ``"batch_size": true``, ``"remote": "yes"`` or a search's
``"budget": "5"`` (`SearchGoal`'s counts are strict now). The document
says boolean and integer; such a body must be a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api_helpers import Users


@pytest.mark.parametrize(
    ("field", "value"),
    [("remote", 0), ("remote", "yes"), ("threads", "4"), ("batch_size", True), ("inter_op_threads", 2.0)],
)
def test_a_target_field_of_the_wrong_json_type_is_422(client: TestClient, users: Users, field: str, value: Any) -> None:
    response = client.post("/v1/targets", json={"name": "board", field: value}, headers=users.a)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get("/v1/targets/board", headers=users.a).status_code == 404


def test_a_claim_lease_given_as_a_string_is_422_and_an_integer_is_a_number(client: TestClient, users: Users) -> None:
    agent = client.post("/v1/agents", json={"name": "lab", "targets": ["cpu-ort"]}, headers=users.a).json()
    url = f"/v1/agents/{agent['id']}/claim"
    refused = client.post(url, json={"target": "cpu-ort", "lease_s": "30"}, headers=users.a)
    assert (refused.status_code, refused.json()["field"]) == (422, "lease_s")
    assert client.post(url, json={"target": "cpu-ort", "lease_s": 30}, headers=users.a).status_code == 204


@pytest.mark.parametrize(
    ("field", "value"), [("budget", "5"), ("budget", 5.0), ("seed", True), ("predictor_samples", "20"),
                         ("export_limit", 2.0)],
)  # fmt: skip
def test_a_search_count_of_the_wrong_json_type_is_422(client: TestClient, users: Users, field: str, value: Any) -> None:
    body = {"supernet_id": 1, "objectives": ["accuracy", "macs"], field: value}
    response = client.post("/v1/searches", json=body, headers=users.a)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field

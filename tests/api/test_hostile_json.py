"""Stored poison (issue 25, case 5): every free-form JSON value the service stores is bounded in depth and size.

A 900-deep agent ``environment`` used to be stored and then break the owner's target reads (500);
a 1 MB ``provider_options`` value was stored and returned on every list.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.context import ServiceContext
from api.schemas.base import MAX_JSON_BYTES, MAX_JSON_DEPTH
from store.models import Agent, AgentTask, Job, Target
from tests.api_helpers import Users, tiny_onnx

SPACE = "ofa_mbv3_d234_e346_k357_32px"


def nested(depth: int) -> Any:
    """A JSON value `depth` objects deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def post_raw(client: TestClient, url: str, body: Any, headers: dict[str, str]) -> Any:
    """POST `body` as JSON written by Python's own encoder (which does not mind depth or non-finite numbers)."""
    return client.post(url, content=json.dumps(body).encode(), headers={**headers, "Content-Type": "application/json"})


def assert_422(response: Any, field: str, words: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("validation_error", field), body
    assert words in body["message"], body["message"]


def add_target(client: TestClient, users: Users) -> None:
    assert client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a).status_code == 201


def test_a_deep_agent_environment_is_refused_and_the_targets_stay_readable(
    client: TestClient, ctx: ServiceContext, users: Users
) -> None:
    add_target(client, users)
    body = {"name": "deep", "targets": ["board-ort"], "environment": nested(900)}
    assert_422(post_raw(client, "/v1/agents", body, users.a), "environment", f"deeper than {MAX_JSON_DEPTH} levels")
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Agent.id))) == 0
    assert client.get("/v1/targets", headers=users.a).status_code == 200
    assert client.get("/v1/targets/board-ort", headers=users.a).status_code == 200
    ok = {"name": "ok", "targets": ["board-ort"], "environment": nested(MAX_JSON_DEPTH - 1)}
    assert post_raw(client, "/v1/agents", ok, users.a).status_code == 201
    assert client.get("/v1/targets/board-ort", headers=users.a).status_code == 200


def test_a_megabyte_of_provider_options_is_refused(client: TestClient, ctx: ServiceContext, users: Users) -> None:
    body = {"name": "big", "provider_options": {"x": "a" * 1_000_000}}
    assert_422(post_raw(client, "/v1/targets", body, users.a), "provider_options", f"at most {MAX_JSON_BYTES}")
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Target.id)).where(Target.name == "big")) == 0
    small = {"name": "small", "provider_options": {"x": "a" * 1000}}
    assert post_raw(client, "/v1/targets", small, users.a).status_code == 201


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("settings", nested(100), "deeper than"),
        ("settings", {"x": "a" * (MAX_JSON_BYTES + 1)}, "at most"),
        ("arch", nested(100), "deeper than"),
        ("arch", {"d": [float("inf")]}, "not a finite number"),
    ],
)
def test_task_settings_and_arch_are_bounded(
    client: TestClient, ctx: ServiceContext, users: Users, field: str, value: Any, words: str
) -> None:
    add_target(client, users)
    body = {"model_base64": base64.b64encode(tiny_onnx()).decode(), field: value}
    where = field if words != "not a finite number" else f"{field}.d.0"
    assert_422(post_raw(client, "/v1/targets/board-ort/tasks", body, users.a), where, words)
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(AgentTask.id))) == 0


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"arch": nested(100)}, "config", "deeper than"),
        ({"data_dir": "a" * (MAX_JSON_BYTES + 1)}, "config", "at most"),
        ({"arch": {"ks": [3, 2**60]}}, "config.arch.ks.1", "beyond +-2**53"),
    ],
)
def test_a_training_config_is_bounded(
    client: TestClient, ctx: ServiceContext, users: Users, config: dict[str, Any], field: str, words: str
) -> None:
    assert_422(post_raw(client, "/v1/supernets", {"config": {"space": SPACE, **config}}, users.a), field, words)
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Job.id))) == 0


def test_a_task_result_measurement_is_bounded(client: TestClient, users: Users) -> None:
    body = {"measurement": nested(100)}
    assert_422(post_raw(client, "/v1/agents/1/tasks/1/result", body, users.a), "measurement", "deeper than")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"config": {"epochs": ' + "9" * 5000 + "}}", "a number has over 4,300 digits"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"config": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}", "nested too deeply"),
    ],
)
def test_json_python_cannot_read_is_422_naming_the_body(client: TestClient, users: Users, body: str, says: str) -> None:
    response = client.post(
        "/v1/supernets", content=body.encode(), headers={**users.a, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "body" and says in response.json()["message"]
    assert client.get("/v1/supernets", headers=users.a).status_code == 200  # the connection still serves

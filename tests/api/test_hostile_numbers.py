"""Hostile numbers (issue 25, cases 1 and 3): ids, cursors and settings that overflow, and non-finite or absurd values.

Python's ``json`` reads ``Infinity``, ``NaN`` and ``1e309`` as floats and ``10**30`` as an int, so
these bodies are sent as raw bytes; each must be a 422 naming the field, never a 500 or a
silently replaced value.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.context import ServiceContext
from api.schemas.base import MAX_ID
from store.models import Job, Supernet
from tests.api_helpers import Users, tiny_onnx

SPACE = "ofa_mbv3_d234_e346_k357_32px"
LIST_ROUTES = ["/v1/searches", "/v1/supernets", "/v1/jobs", "/v1/agents", "/v1/targets"]


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def post_raw(client: TestClient, url: str, body: str, headers: dict[str, str]) -> Any:
    return client.post(url, content=body.encode(), headers={**headers, "Content-Type": "application/json"})


def assert_422(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("validation_error", field), response.json()


@pytest.mark.parametrize("route", LIST_ROUTES)
@pytest.mark.parametrize(
    "text", [f"id:{MAX_ID + 1}", "id:" + "9" * 30, "id:0", "id:-1", "id: 5", "id:5_0", "id:\u0663", "id:"]
)
def test_a_page_token_out_of_range_is_422_on_every_list(
    client: TestClient, users: Users, route: str, text: str
) -> None:
    assert_422(client.get(route, params={"page_token": token(text)}, headers=users.a), "page_token")
    assert client.get(route, headers=users.a).status_code == 200  # the connection still serves


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_the_largest_id_is_a_valid_token(client: TestClient, users: Users, route: str) -> None:
    assert client.get(route, params={"page_token": token(f"id:{MAX_ID}")}, headers=users.a).status_code == 200


def job_of(client: TestClient, users: Users) -> int:
    body = {"config": {"space": SPACE, "epochs": 1}}
    response = client.post("/v1/supernets", json=body, headers=users.a)
    assert response.status_code == 202
    return int(response.json()["id"])


@pytest.mark.parametrize("value", [str(MAX_ID + 1), "9" * 40])
def test_an_event_cursor_out_of_range_is_422(client: TestClient, users: Users, value: str) -> None:
    job = job_of(client, users)
    url = f"/v1/jobs/{job}/events"
    assert_422(client.get(url, params={"after": value, "follow": "false"}, headers=users.a), "after")
    header = {**users.a, "Last-Event-ID": value}
    assert_422(client.get(url, params={"follow": "false"}, headers=header), "last-event-id")
    ok = client.get(url, params={"after": str(MAX_ID), "follow": "false"}, headers=users.a)
    assert ok.status_code == 200 and "id:" not in ok.text  # no event after the largest id


@pytest.mark.parametrize("route", ["/v1/jobs/{}", "/v1/supernets/{}", "/v1/searches/{}", "/v1/subnets/{}"])
def test_a_path_id_out_of_range_is_422(client: TestClient, users: Users, route: str) -> None:
    response = client.get(route.format(MAX_ID + 1), headers=users.a)
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ('{"lr": Infinity}', "config.lr"),
        ('{"lr": 1e309}', "config.lr"),
        ('{"lr": NaN}', "config.lr"),
        ('{"lr": 11}', "config.lr"),
        ('{"momentum": -Infinity}', "config.momentum"),
        ('{"warmup_epochs": Infinity}', "config.warmup_epochs"),
        (f'{{"epochs": {10**30}}}', "config.epochs"),
        ('{"epochs": 10001}', "config.epochs"),
        ('{"phases": [{"name": "full", "epochs": 1, "lr": Infinity}]}', "config.phases.0.lr"),
        ('{"phases": [{"name": "full", "epochs": 100000, "lr": 0.1}]}', "config.phases.0.epochs"),
    ],
)
def test_training_numbers_must_be_finite_and_bounded(
    client: TestClient, ctx: ServiceContext, users: Users, config: str, field: str
) -> None:
    assert_422(post_raw(client, "/v1/supernets", f'{{"config": {config}}}', users.a), field)
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Job.id))) == 0


def test_the_largest_epochs_and_lr_are_accepted(client: TestClient, users: Users) -> None:
    body = {"config": {"space": SPACE, "epochs": 10_000, "lr": 10.0}}
    response = client.post("/v1/supernets", json=body, headers=users.a)
    assert response.status_code == 202 and response.json()["params"]["config"]["lr"] == 10.0


@pytest.mark.parametrize(
    ("constraint", "field"),
    [("NaN", "constraints.latency"), ("Infinity", "constraints.latency"), ("[null, -Infinity]", "constraints.latency")],
)
def test_search_constraints_must_be_finite(
    client: TestClient, ctx: ServiceContext, users: Users, constraint: str, field: str
) -> None:
    with ctx.db.session() as s:
        row = Supernet(user_id=users.a_id, space=SPACE, dataset="demo", strategy="sandwich", config={"space": SPACE})
        s.add(row)
        s.flush()
        supernet_id = row.id
    body = {"supernet_id": supernet_id, "objectives": ["accuracy", "latency"], "targets": ["cpu-ort"], "budget": 100}
    text = json.dumps(body)[:-1] + f', "constraints": {{"latency": {constraint}}}}}'
    response = post_raw(client, "/v1/searches", text, users.a)
    assert response.status_code == 422 and response.json()["field"].startswith(field), response.json()
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Job.id))) == 0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (f'{{"runs": {10**30}}}', "settings.runs"),
        ('{"runs": 1000000000}', "settings"),  # finite and a safe integer, but days of a device's time
        ('{"warmup_seconds": Infinity}', "settings.warmup_seconds"),
        ('{"cv_threshold": NaN}', "settings.cv_threshold"),
    ],
)
def test_task_settings_must_be_finite_and_bounded(client: TestClient, users: Users, settings: str, field: str) -> None:
    assert client.post("/v1/targets", json={"name": "board-ort", "device": "arm"}, headers=users.a).status_code == 201
    model = base64.b64encode(tiny_onnx()).decode()
    response = post_raw(
        client, "/v1/targets/board-ort/tasks", f'{{"model_base64": "{model}", "settings": {settings}}}', users.a
    )
    assert_422(response, field)


def test_an_agent_lease_must_be_finite(client: TestClient, users: Users) -> None:
    assert_422(post_raw(client, "/v1/agents/1/claim", '{"target": "x", "lease_s": NaN}', users.a), "lease_s")

"""Issue 25, case 6: target names are per user, so no status code reveals another user's private target."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.context import ServiceContext
from tests.api_helpers import Users


def test_another_users_private_target_name_is_neither_taken_nor_visible(client: TestClient, users: Users) -> None:
    mine = client.post("/v1/targets", json={"name": "rpi4-secret", "device": "arm"}, headers=users.a)
    assert mine.status_code == 201
    fresh = client.post("/v1/targets", json={"name": "never-used", "device": "x86"}, headers=users.b)
    taken_by_a = client.post("/v1/targets", json={"name": "rpi4-secret", "device": "x86"}, headers=users.b)
    assert (taken_by_a.status_code, fresh.status_code) == (201, 201)  # the same answer: alice's name stays hers
    assert taken_by_a.json()["device"] == "x86" and not taken_by_a.json()["shared"]

    assert client.get("/v1/targets/rpi4-secret", headers=users.a).json()["device"] == "arm"
    assert client.get("/v1/targets/rpi4-secret", headers=users.b).json()["device"] == "x86"
    listed = {t["name"]: t["device"] for t in client.get("/v1/targets", headers=users.b).json()["items"]}
    assert listed["rpi4-secret"] == "x86" and "arm" not in listed.values()

    again = client.post("/v1/targets", json={"name": "rpi4-secret"}, headers=users.b)
    assert again.status_code == 409
    assert again.json() == {"code": "conflict", "message": "you already have a target named 'rpi4-secret'",
                            "field": "name"}  # fmt: skip
    builtin = client.post("/v1/targets", json={"name": "cpu-ort"}, headers=users.b)
    assert (builtin.status_code, builtin.json()["field"]) == (409, "name")


YAML_SPACE = "ofa_mbv3_d234_e346_k357_32px"
BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"32": "a: !!python/object/apply:os.system ['true']\n"}, "tables.32, line 1, column 4: could not determine"),
        ({"32": "a: [1, 2\n"}, "tables.32, line 2, column 1: while parsing a flow sequence"),
        ({"32": "a:\n\tmean: 1\n"}, "tables.32, line 2, column 1: while scanning for the next token"),
        ({"32": "a:\n  ? [1, 2]\n  : 3\n"}, "tables.32, line 2, column 5: while constructing a mapping"),
        ({"32": "a:\n  mean: 2020-01-01\n"}, "tables.32, line 1: key 'a' is not a layer"),
        ({"32": "a: " + "[" * 5000 + "]" * 5000}, "tables.32, line 1, column 11: nested deeper than 8 levels"),
        ({"32": "a: \ud800\n"}, "tables.32, line 1, column 4: character #xd800 is not allowed in YAML"),
        ({"32": BOMB}, "tables.32, line 6, column 4: expands to more than 100000 nodes"),
        ({"３２": "a: 1\n"}, "key '\\uff13\\uff12' is not a resolution"),
        ({"3" * 300: "a: 1\n"}, "key '33333333333333333333'... is not a resolution"),
        ({"\ud800": "a: 1\n"}, "key '\\ud800' is not a resolution"),
        ({"32": "a: 1\n", "032": "a: 1\n"}, "key '032' names resolution 32 again"),
        ({"224": "a: 1\n"}, "tables.224: resolution 224 is not in space"),
    ],
)
def test_a_hostile_table_upload_is_a_422_with_the_line_and_the_reason(
    client: TestClient, ctx: ServiceContext, users: Users, tables: dict[str, str], message: str
) -> None:
    assert client.post("/v1/targets", json={"name": "board-ort"}, headers=users.a).status_code == 201
    body = json.dumps({"space": YAML_SPACE, "tables": tables})  # ASCII: a lone surrogate goes as a JSON escape
    answer = client.post("/v1/targets/board-ort/tables", content=body,
                         headers={**users.a, "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422
    assert answer.json()["field"] == "tables" and message in answer.json()["message"]
    assert client.get("/v1/targets/board-ort/models", headers=users.a).json() == []
    assert not (ctx.settings.artifacts_path / "targets").exists()

"""``/v1/targets`` reads: the built-in targets are seeded when the app starts, so listing them writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from api.app import create_app
from predictors.latency import list_targets
from store.models import Target
from tests.api_helpers import make_context, make_users

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


def test_builtin_targets_are_seeded_at_start_up_and_reading_them_writes_nothing(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    users = make_users(ctx.db)
    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            writes.append(statement)

    with TestClient(create_app(context=ctx)) as client:
        with ctx.db.reader() as s:
            assert set(s.scalars(select(Target.name))) == set(list_targets())
        assert client.get("/v1/jobs", headers=users.a).status_code == 200  # authenticates (records the token's use)
        event.listen(ctx.db.engine, "before_cursor_execute", record)
        try:
            listed = client.get("/v1/targets", headers=users.a)
            one = client.get("/v1/targets/cpu-ort", headers=users.a)
            models = client.get("/v1/targets/cpu-ort/models", headers=users.a)
        finally:
            event.remove(ctx.db.engine, "before_cursor_execute", record)
    assert writes == []
    assert listed.status_code == 200 and listed.json()["next_page_token"] is None
    items = listed.json()["items"]
    assert [t["name"] for t in items] == list_targets()[::-1]  # newest first
    assert all(t["shared"] and t["description"] == "built in" for t in items)
    assert one.json() == next(t for t in items if t["name"] == "cpu-ort")
    assert models.status_code == 200 and models.json() == []

    with TestClient(create_app(context=ctx)), ctx.db.reader() as s:  # a restart seeds nothing twice
        assert s.scalar(select(func.count()).select_from(Target)) == len(list_targets())
    ctx.db.dispose()


def test_a_targets_tasks_are_listed_for_their_owner_and_filtered_by_status(
    client: TestClient, users: Any, tmp_path: Path
) -> None:
    import base64

    from tests.api_helpers import tiny_onnx

    model = base64.b64encode(tiny_onnx()).decode()
    assert client.post("/v1/targets", json={"name": "board", "remote": True}, headers=users.a).status_code == 201
    ids = [client.post("/v1/targets/board/tasks", json={"model_base64": model}, headers=users.a).json()["id"]
           for _ in range(3)]  # fmt: skip
    agent = client.post("/v1/agents", json={"name": "lab", "targets": ["board"]}, headers=users.a).json()
    claim = client.post(f"/v1/agents/{agent['id']}/claim", json={"target": "board"}, headers=users.a)
    assert claim.status_code == 200 and claim.json()["id"] == ids[0]  # the oldest first
    listed = client.get("/v1/targets/board/tasks", headers=users.a).json()
    assert [t["id"] for t in listed["items"]] == ids[::-1] and listed["next_page_token"] is None
    queued = client.get("/v1/targets/board/tasks", params={"status": "QUEUED", "page_size": 1}, headers=users.a).json()
    assert [t["id"] for t in queued["items"]] == [ids[2]] and queued["next_page_token"]
    rest = client.get("/v1/targets/board/tasks", params={"status": "QUEUED", "page_token": queued["next_page_token"]},
                      headers=users.a).json()  # fmt: skip
    assert [t["id"] for t in rest["items"]] == [ids[1]]
    assert client.get("/v1/targets/board/tasks", params={"status": "LOST"}, headers=users.a).status_code == 422
    assert client.get("/v1/targets/board/tasks", headers=users.b).status_code == 404  # another user's target
    assert client.get("/v1/targets/cpu-ort/tasks", headers=users.b).json()["items"] == []  # a shared one: only theirs

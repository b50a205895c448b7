"""The REST API through FastAPI's TestClient: auth, errors, supernets, searches, jobs and their events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from api.context import ServiceContext
from store.models import Job, Subnet, Supernet
from tests.api_helpers import Users, make_context, make_users

SPACE = "ofa_mbv3_d234_e346_k357_32px"


def add_supernet(ctx: ServiceContext, user_id: int) -> int:
    with ctx.db.session() as s:
        row = Supernet(user_id=user_id, space=SPACE, dataset="demo", strategy="sandwich", config={"space": SPACE})
        s.add(row)
        s.flush()
        return row.id


def search_body(supernet_id: int, **changes: Any) -> dict[str, Any]:
    body = {
        "supernet_id": supernet_id,
        "objectives": ["accuracy", "latency"],
        "constraints": {"latency": 5.0},
        "targets": ["cpu-ort"],
        "algorithm": "evolution",
        "budget": 100,
    }
    return {**body, **changes}


def test_importing_the_app_loads_no_heavy_module() -> None:
    code = "import sys, api.app; print(sorted(m for m in ('torch', 'onnxruntime', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_health_readiness_and_openapi_examples(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "database": "sqlite"}
    spec = client.get("/openapi.json").json()
    assert "/v1/searches/{search_id}/pareto" in spec["paths"]
    assert spec["components"]["schemas"]["SearchCreate"]["examples"][0]["algorithm"] == "evolution"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_missing_or_bad_token_is_401_json(client: TestClient, users: Users, header: str | None) -> None:
    r = client.get("/v1/searches", headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized" and set(r.json()) == {"code", "message", "field"}


def test_supernet_training_is_a_job_with_idempotency(client: TestClient, users: Users) -> None:
    body = {"name": "demo", "config": {"space": SPACE, "dataset": "demo", "epochs": 1}}
    first = client.post("/v1/supernets", json=body, headers={**users.a, "Idempotency-Key": "k1"})
    assert first.status_code == 202
    job = first.json()
    assert first.headers["location"] == f"/v1/jobs/{job['id']}" and job["kind"] == "train_supernet"
    assert job["status"] == "QUEUED" and job["params"]["config"]["batch_size"] == 128  # preset default filled
    again = client.post("/v1/supernets", json=body, headers={**users.a, "Idempotency-Key": "k1"})
    assert again.status_code == 202 and again.json()["id"] == job["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/supernets", json={**body, "name": "x"}, headers={**users.a, "Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert client.get(f"/v1/jobs/{job['id']}", headers=users.a).json()["status"] == "QUEUED"
    assert client.get(f"/v1/jobs/{job['id']}", headers=users.b).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": {}, "colour": "red"}, "colour"),
        ({"config": {"epochs": 0}}, "config.epochs"),
        ({"config": {}, "name": 5}, "name"),
        ({}, "config"),
    ],
)
def test_bad_supernet_bodies_name_the_field(client: TestClient, users: Users, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/supernets", json=body, headers=users.a)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error" and r.json()["field"] == field


@pytest.mark.parametrize(
    ("name", "value"), [("space", "ofa_resnet50"), ("dataset", "imagenet"), ("strategy", "bigbang")]
)
def test_an_unknown_space_dataset_or_strategy_is_refused_at_submission(
    client: TestClient, ctx: ServiceContext, users: Users, name: str, value: str
) -> None:
    from nas.data import list_datasets
    from nas.spaces import list_spaces
    from nas.train import list_strategies

    r = client.post("/v1/supernets", json={"config": {"space": SPACE, name: value}}, headers=users.a)
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (422, "validation_error", f"config.{name}")
    registered = {"space": list_spaces, "dataset": list_datasets, "strategy": list_strategies}[name]()
    assert r.json()["message"] == f"config.{name}: unknown {name} {value!r}; registered: {', '.join(registered)}"
    with ctx.db.reader() as s:
        assert s.scalar(select(func.count(Job.id))) == 0  # nothing was queued


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"{not json", "line 1, column 2 (position 1)"),
        (b'{"config": {\n  "epochs": 3,\n}}', "line 3, column 1 (position 28)"),
    ],
)
def test_malformed_json_is_422_naming_the_body_and_where(
    client: TestClient, users: Users, body: bytes, where: str
) -> None:
    r = client.post("/v1/supernets", content=body, headers={**users.a, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error" and r.json()["field"] == "body"
    message = r.json()["message"]
    assert message.startswith("the request body is not valid JSON: ") and message.endswith(f" at {where}"), message


def test_oversized_body_is_413(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, max_body_bytes=1000)
    users = make_users(ctx.db)
    with TestClient(create_app(context=ctx)) as client:
        r = client.post("/v1/supernets", json={"config": {}, "name": "x" * 2000}, headers=users.a)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


def test_an_oversized_chunked_body_is_413_too(tmp_path: Path) -> None:
    """No Content-Length: the body is counted as it streams in (it was a 400 "error parsing the body")."""
    ctx = make_context(tmp_path, max_body_bytes=1000)
    users = make_users(ctx.db)
    chunks = (b'{"name": "' + b"x" * 500, b"x" * 500, b"x" * 500 + b'", "config": {}}')
    with TestClient(create_app(context=ctx)) as client:
        r = client.post("/v1/supernets", content=iter(chunks), headers={**users.a, "Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["code"] == "payload_too_large", r.text
        assert client.get("/v1/jobs", headers=users.a).status_code == 200  # the server goes on serving


def test_search_create_get_list_cancel_and_isolation(client: TestClient, ctx: ServiceContext, users: Users) -> None:
    supernet = add_supernet(ctx, users.a_id)
    r = client.post("/v1/searches", json=search_body(supernet), headers=users.a)
    assert r.status_code == 202
    search = r.json()
    assert r.headers["location"] == f"/v1/searches/{search['id']}"
    assert search["objectives"] == ["accuracy", "latency:cpu-ort"]  # the alias resolved
    assert search["directions"] == {"accuracy": "max", "latency:cpu-ort": "min"}
    assert search["constraints"] == {"latency:cpu-ort": 5.0} and search["status"] == "QUEUED"
    job = ctx.queue.get(search["job_id"])
    assert job.kind == "search" and job.params["space"] == SPACE
    for _ in range(2):
        client.post("/v1/searches", json=search_body(supernet, seed=1), headers=users.a)
    page = client.get("/v1/searches?page_size=2", headers=users.a).json()
    assert len(page["items"]) == 2 and page["next_page_token"]
    rest = client.get(f"/v1/searches?page_size=2&page_token={page['next_page_token']}", headers=users.a).json()
    assert [s["id"] for s in rest["items"]] == [search["id"]] and rest["next_page_token"] is None
    assert client.get("/v1/searches?page_token=garbage", headers=users.a).json()["field"] == "page_token"
    # user B sees nothing of A's
    assert client.get("/v1/searches", headers=users.b).json()["items"] == []
    assert client.get(f"/v1/searches/{search['id']}", headers=users.b).status_code == 404
    assert client.post(f"/v1/searches/{search['id']}/cancel", headers=users.b).status_code == 404
    assert client.post("/v1/searches", json=search_body(supernet), headers=users.b).json()["field"] == "supernet_id"
    cancelled = client.post(f"/v1/searches/{search['id']}/cancel", headers=users.a)
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("changes", "status", "field"),
    [
        ({"algorithm": "simulated_annealing"}, 422, "algorithm"),
        ({"objectives": ["accuracy", "latency:gpu9"]}, 422, "objectives"),
        ({"targets": ["no-such-target"]}, 404, "targets"),
        ({"constraints": {"macs": 1e6}}, 422, "constraints"),
        ({"constraints": {"latency:gpu9": 1.0}}, 422, "constraints"),  # an unknown objective, named where it is
        ({"directions": {"flops": "min"}}, 422, "directions"),
        ({"directions": {"accuracy": "up"}}, 422, "directions.accuracy"),
        ({"budget": 0}, 422, "budget"),
        ({"objectives": []}, 422, "objectives"),
        ({"colour": "red"}, 422, "colour"),
    ],
)
def test_bad_search_requests(
    client: TestClient, ctx: ServiceContext, users: Users, changes: dict[str, Any], status: int, field: str
) -> None:
    r = client.post("/v1/searches", json=search_body(add_supernet(ctx, users.a_id), **changes), headers=users.a)
    assert (r.status_code, r.json()["field"]) == (status, field), r.json()


def test_pareto_json_and_csv(client: TestClient, ctx: ServiceContext, users: Users) -> None:
    search = client.post("/v1/searches", json=search_body(add_supernet(ctx, users.a_id)), headers=users.a).json()
    with ctx.db.session() as s:
        for i, rank in enumerate([0, 0, 1]):
            s.add(
                Subnet(
                    user_id=users.a_id,
                    supernet_id=search["supernet_id"],
                    search_id=search["id"],
                    arch_key=f"k{i}",
                    arch={"r": 32},
                    predicted={"accuracy": 0.5 + i / 10, "latency:cpu-ort": 1.0 + i},
                    validated={"accuracy": 0.49 + i / 10},
                    pareto_rank=rank,
                )
            )
    front = client.get(f"/v1/searches/{search['id']}/pareto", headers=users.a).json()
    assert [p["arch_key"] for p in front["points"]] == ["k0", "k1"]
    assert front["points"][1]["predicted"]["latency:cpu-ort"] == 2.0
    csv = client.get(f"/v1/searches/{search['id']}/pareto?format=csv", headers=users.a)
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].startswith("subnet_id,arch_key,pareto_rank,predicted.accuracy,predicted.latency:cpu-ort")
    assert len(lines) == 3 and ",k1,0,0.6,2.0,0.59," in lines[2]
    assert client.get(f"/v1/searches/{search['id']}/pareto?format=xml", headers=users.a).json()["field"] == "format"
    assert client.get(f"/v1/searches/{search['id']}/pareto", headers=users.b).status_code == 404


def test_an_empty_front_says_why_in_the_search_its_list_and_the_front(
    client: TestClient, ctx: ServiceContext, users: Users
) -> None:
    supernet = add_supernet(ctx, users.a_id)
    empty = client.post("/v1/searches", json=search_body(supernet, constraints={"latency": 0.01}), headers=users.a)
    full = client.post("/v1/searches", json=search_body(supernet), headers=users.a)
    assert empty.json()["empty_reason"] is None  # not ended yet
    reason = "no subnet met latency:cpu-ort <= 0.01: the smallest value seen was 0.3127 after 100 evaluations"
    for outcome in (reason, None):  # what the search job returns (workers.kinds.search), front or no front
        lease = ctx.queue.claim("w1", 60)
        assert lease is not None
        ctx.queue.complete(lease, {"n_evaluations": 100, "reason": outcome, "hypervolume": 0.0, "members": []})
    url = f"/v1/searches/{empty.json()['id']}"
    assert client.get(url, headers=users.a).json()["empty_reason"] == reason
    front = client.get(f"{url}/pareto", headers=users.a).json()
    assert (front["status"], front["points"], front["empty_reason"]) == ("SUCCEEDED", [], reason)
    listed = client.get("/v1/searches", headers=users.a).json()["items"]
    assert [(s["id"], s["empty_reason"]) for s in listed] == [(full.json()["id"], None), (empty.json()["id"], reason)]
    assert client.get(f"/v1/searches/{full.json()['id']}/pareto", headers=users.a).json()["empty_reason"] is None


def test_jobs_list_is_yours_newest_first_paginated_and_filtered(
    client: TestClient, ctx: ServiceContext, users: Users
) -> None:
    noop, _ = ctx.queue.submit("noop", {}, user_id=users.a_id)
    lease = ctx.queue.claim("w1", 60, kinds=["noop"])
    assert lease is not None
    ctx.queue.complete(lease, {"ok": True})
    train = client.post("/v1/supernets", json={"config": {"space": SPACE, "epochs": 1}}, headers=users.a).json()
    search = client.post("/v1/searches", json=search_body(add_supernet(ctx, users.a_id)), headers=users.a).json()
    bobs, _ = ctx.queue.submit("noop", {}, user_id=users.b_id)

    def ids(query: str = "", who: dict[str, str] = users.a) -> list[int]:
        r = client.get(f"/v1/jobs{query}", headers=who)
        assert r.status_code == 200, r.json()
        return [job["id"] for job in r.json()["items"]]

    assert ids() == [search["job_id"], train["id"], noop.id]
    first = client.get("/v1/jobs?page_size=2", headers=users.a).json()
    assert [j["id"] for j in first["items"]] == [search["job_id"], train["id"]]
    assert first["items"][0]["kind"] == "search" and first["items"][0]["status"] == "QUEUED"
    assert ids(f"?page_size=2&page_token={first['next_page_token']}") == [noop.id]
    assert ids("?kind=search") == [search["job_id"]]
    assert ids("?status=SUCCEEDED") == [noop.id]
    assert ids("?kind=train_supernet&status=QUEUED") == [train["id"]]
    assert ids("?kind=noop&status=QUEUED") == []
    assert ids(who=users.b) == [bobs.id]
    bad_kind = client.get("/v1/jobs?kind=serach", headers=users.a).json()
    assert bad_kind["field"] == "kind" and "unknown job kind 'serach'; registered: " in bad_kind["message"]
    assert "search" in bad_kind["message"].split("registered: ")[1].split(", ")
    assert client.get("/v1/jobs?status=DONE", headers=users.a).json()["field"] == "status"
    assert client.get("/v1/jobs?page_token=garbage", headers=users.a).json()["field"] == "page_token"


def test_job_events_stream_resumes_with_last_event_id(client: TestClient, ctx: ServiceContext, users: Users) -> None:
    job, _ = ctx.queue.submit("noop", {}, user_id=users.a_id)
    lease = ctx.queue.claim("w1", 60)
    assert lease is not None
    ctx.queue.progress(lease, {"step": 1, "steps": 2})
    ctx.queue.log(lease, "half way")
    ctx.queue.complete(lease, {"ok": True})
    url = f"/v1/jobs/{job.id}/events"
    with client.stream("GET", url, headers=users.a) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("id:")]
    ids = [int(block.split("\n")[0].removeprefix("id: ")) for block in events]
    kinds = [block.split("\n")[1].removeprefix("event: ") for block in events]
    assert ids == [1, 2, 3, 4, 5] and kinds == ["status", "status", "progress", "log", "status"]
    assert '"status":"SUCCEEDED"' in events[-1]
    resumed = client.get(url, headers={**users.a, "Last-Event-ID": "3"}).text
    assert [b.split("\n")[0] for b in resumed.split("\n\n") if b.startswith("id:")] == ["id: 4", "id: 5"]
    assert client.get(url, headers=users.b).status_code == 404


def test_pareto_of_an_ended_search_is_rendered_once(client: TestClient, ctx: ServiceContext, users: Users) -> None:
    search = client.post("/v1/searches", json=search_body(add_supernet(ctx, users.a_id)), headers=users.a).json()
    url = f"/v1/searches/{search['id']}/pareto"

    def add(key: str) -> None:
        with ctx.db.session() as s:
            s.add(Subnet(user_id=users.a_id, supernet_id=search["supernet_id"], search_id=search["id"], arch_key=key,
                         arch={"r": 32}, predicted={"accuracy": 0.5}, pareto_rank=0))  # fmt: skip

    add("k0")
    assert [p["arch_key"] for p in client.get(url, headers=users.a).json()["points"]] == ["k0"]
    add("k1")  # still queued: the front is read again
    assert [p["arch_key"] for p in client.get(url, headers=users.a).json()["points"]] == ["k0", "k1"]
    ctx.queue.cancel(search["job_id"], user_id=users.a_id)  # ended: from now on the front is fixed
    ended = client.get(url, headers=users.a)
    assert ended.json()["status"] == "CANCELLED" and ctx.fronts.get(search["id"], "json") is not None
    add("k2")  # cannot happen after the end; shows the cached rendering is served
    again = client.get(url, headers=users.a)
    assert again.content == ended.content and again.headers["content-type"] == "application/json"
    assert client.get(url, headers=users.b).status_code == 404


@pytest.mark.parametrize("ttl_s", [0.0, 0.05])
def test_a_revoked_token_stops_working_within_the_cache_ttl(tmp_path: Path, ttl_s: float) -> None:
    import time

    from api.auth import TokenCache, create_token, create_user, revoke_token

    context = make_context(tmp_path, tokens=TokenCache(ttl_s=ttl_s))
    token = create_token(context.db, create_user(context.db, "carol").id)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(context=context)) as c:
        assert c.get("/v1/searches", headers=headers).status_code == 200
        assert revoke_token(context.db, token)
        time.sleep(ttl_s * 4)
        assert c.get("/v1/searches", headers=headers).status_code == 401
    context.db.dispose()


def test_a_stale_token_entry_is_refreshed_by_one_caller_and_fresh_again_after(tmp_path: Path) -> None:
    """Past its ttl, one request refreshes a token while the others keep the entry; then it is fresh again.

    Regression: the refreshing caller used to take the stale entry and leave the token marked as
    being refreshed, so after twice the ttl every request went to the database.
    """
    from api.auth import TokenCache, create_token, create_user

    now = [0.0]
    tokens = TokenCache(ttl_s=5.0, clock=lambda: now[0])
    context = make_context(tmp_path, tokens=tokens)
    token = create_token(context.db, create_user(context.db, "dave").id)
    with TestClient(create_app(context=context)) as c:
        assert c.get("/v1/searches", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert tokens.cached(token) is not None
    now[0] = 6.0  # stale: the first caller refreshes, the others keep the entry meanwhile
    assert tokens.cached(token) is None
    assert tokens.cached(token) is not None
    user = tokens.refresh(context.db, token)
    assert user is not None and user.name == "dave"
    now[0] = 10.0  # twice the first entry's ttl, within the refreshed entry's
    assert tokens.cached(token) is not None
    now[0] = 30.0  # long expired: looked up again
    assert tokens.cached(token) is None
    context.db.dispose()


def test_an_api_restart_during_a_job_loses_nothing(tmp_path: Path) -> None:
    """The API keeps no job state: a job queued through one app process is followed through the next one."""
    import threading

    from workers.runner import Runner

    first = make_context(tmp_path)
    users = make_users(first.db)
    with TestClient(create_app(context=first)) as c:
        supernet_id = add_supernet(first, users.a_id)
        search = c.post("/v1/searches", json=search_body(supernet_id), headers=users.a).json()
    job, _ = first.queue.submit("noop", {"seconds": 0.6, "steps": 3}, user_id=users.a_id)
    runner = Runner(first.queue, first.store, tmp_path / "runs", lease_s=30, progress_interval_s=0, kinds=["noop"])
    worker = threading.Thread(target=runner.run_once)
    worker.start()  # the job runs while the API is down and comes back
    first.db.dispose()
    second = make_context(tmp_path)
    with TestClient(create_app(context=second)) as c:
        worker.join(timeout=60)
        done = c.get(f"/v1/jobs/{job.id}", headers=users.a).json()
        assert done["status"] == "SUCCEEDED", done
        events = c.get(f"/v1/jobs/{job.id}/events", headers=users.a).text
        assert events.count("event: progress") == 3 and '"status":"SUCCEEDED"' in events
        assert c.get(f"/v1/searches/{search['id']}", headers=users.a).json()["status"] == "QUEUED"
    second.db.dispose()


def test_concurrent_misses_share_one_front_rendering() -> None:
    """A burst of requests on an unrendered front renders it once; a failure reaches every waiter."""
    import asyncio

    from api.services.fronts import FrontCache, RenderedFront

    cache = FrontCache()
    calls: list[int] = []

    async def render() -> RenderedFront:
        calls.append(1)
        await asyncio.sleep(0.01)
        front = RenderedFront(7, b"front")
        cache.put(1, "json", front)
        return front

    async def failing() -> RenderedFront:
        calls.append(1)
        await asyncio.sleep(0.01)
        raise LookupError("no such search")

    async def burst() -> None:
        fronts = await asyncio.gather(*(cache.get_or_render(1, "json", render) for _ in range(20)))
        assert len(calls) == 1 and {f.body for f in fronts} == {b"front"}
        assert await cache.get_or_render(1, "json", render) is fronts[0] and len(calls) == 1  # cached now
        calls.clear()
        failures = await asyncio.gather(*(cache.get_or_render(2, "json", failing) for _ in range(5)),
                                        return_exceptions=True)  # fmt: skip
        assert len(calls) == 1 and all(isinstance(f, LookupError) for f in failures)
        with pytest.raises(LookupError):  # nothing kept: the next request renders again
            await cache.get_or_render(2, "json", failing)
        assert len(calls) == 2

    asyncio.run(burst())


def test_the_app_shortens_the_gil_switch_interval_while_it_runs(tmp_path: Path) -> None:
    """The thread pool's database calls must not stall the event loop for 5 ms per step (store.settings)."""
    import sys

    before = sys.getswitchinterval()
    context = make_context(tmp_path)
    with TestClient(create_app(context=context)) as c:
        assert c.get("/healthz").status_code == 200
        assert sys.getswitchinterval() == pytest.approx(context.settings.gil_switch_interval_ms / 1000)
    assert sys.getswitchinterval() == before
    context.db.dispose()

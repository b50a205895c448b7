"""The agents' measurement tasks on SQLite and PostgreSQL: leases, expiry, holders, outcomes, racing claims."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from predictors.latency.measure import Measurement, MeasureSettings
from store import agent_tasks
from store.db import Database
from store.models import Agent, AgentTask, Artifact, LatencyMeasurement, Target, User

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class Rows:
    """A user's target, two agents of it and a model artefact."""

    user_id: int
    target_id: int
    agents: list[int]
    artifact_id: int


@pytest.fixture
def rows(store_db: Database) -> Rows:
    with store_db.session() as s:
        user = User(name="alice")
        s.add(user)
        s.flush()
        target = Target(name="board-ort", user_id=user.id, device="arm", runtime="onnxruntime")
        agents = [Agent(user_id=user.id, name=f"a{i}", targets=["board-ort"]) for i in (1, 2)]
        artifact = Artifact(key="agent_tasks/board-ort/m.onnx", kind="onnx", size=3, sha256="0" * 64, user_id=user.id)
        s.add_all([target, *agents, artifact])
        s.flush()
        return Rows(user.id, target.id, [a.id for a in agents], artifact.id)


def add(db: Database, rows: Rows, **subnet: Any) -> int:
    with db.session() as s:
        return agent_tasks.add_task(s, rows.target_id, rows.artifact_id, MeasureSettings(), user_id=rows.user_id,
                                    **subnet).id  # fmt: skip


def claim(db: Database, rows: Rows, agent: int, now: dt.datetime, lease_s: float = 30) -> AgentTask | None:
    with db.session() as s:
        return agent_tasks.claim_task(s, rows.target_id, rows.agents[agent], now, lease_s)


def test_oldest_task_first_then_nothing_until_a_lease_expires(store_db: Database, rows: Rows) -> None:
    first, second = add(store_db, rows), add(store_db, rows)
    got = claim(store_db, rows, 0, T0)
    assert got is not None and got.id == first and got.status == agent_tasks.CLAIMED
    assert got.agent_id == rows.agents[0] and got.lease_expires_at == T0 + dt.timedelta(seconds=30)
    assert got.payload["settings"] == MeasureSettings().to_dict() and got.payload["user_id"] == rows.user_id
    other = claim(store_db, rows, 1, T0)
    assert other is not None and other.id == second
    assert claim(store_db, rows, 1, T0 + dt.timedelta(seconds=30)) is None, "a lease lasts until it expires"
    again = claim(store_db, rows, 1, T0 + dt.timedelta(seconds=31))
    assert again is not None and again.id == first and again.agent_id == rows.agents[1]
    assert agent_tasks.holds(again, rows.agents[1]) and not agent_tasks.holds(again, rows.agents[0])


def test_outcomes_end_the_lease_and_record_the_measurement(store_db: Database, rows: Rows) -> None:
    measured = add(store_db, rows, space="s", arch={"r": 32}, arch_key="k")
    failed = add(store_db, rows)
    measurement = Measurement(median_ms=2.0, p90_ms=2.2, p95_ms=2.3, mean_ms=2.1, cv=0.1, runs=7, attempts=1,
                              noisy=False, target="board-ort", input_shape=[1, 3, 32, 32], environment={})  # fmt: skip
    for task_id in (measured, failed):
        assert claim(store_db, rows, 0, T0) is not None
        with store_db.session() as s:
            task, agent = s.get(AgentTask, task_id), s.get(Agent, rows.agents[0])
            assert task is not None and agent is not None
            done = measurement if task_id == measured else None
            agent_tasks.finish_task(s, task, agent, T0, done, None if done else "no onnxruntime")
    assert claim(store_db, rows, 1, T0 + dt.timedelta(days=1)) is None, "finished tasks are never claimed again"
    with store_db.reader() as s:
        done_row, failed_row = s.get(AgentTask, measured), s.get(AgentTask, failed)
        assert done_row is not None and failed_row is not None
        assert (done_row.status, done_row.lease_expires_at, done_row.finished_at) == (agent_tasks.DONE, None, T0)
        assert done_row.result is not None and done_row.result["median_ms"] == 2.0 and done_row.result["agent"] == "a1"
        assert failed_row.status == agent_tasks.FAILED
        assert failed_row.result == {"error": "no onnxruntime", "agent": "a1"}
        row = s.scalars(select(LatencyMeasurement)).one()
    assert (row.space, row.arch_key, row.latency_ms, row.repeats, row.source) == ("s", "k", 2.0, 7, "agent:a1")


def test_racing_agents_claim_each_task_once(store_db: Database, rows: Rows) -> None:
    tasks = {add(store_db, rows) for _ in range(6)}
    barrier = threading.Barrier(8)

    def take(i: int) -> list[int]:
        barrier.wait()
        got = []
        while (task := claim(store_db, rows, i % 2, T0)) is not None:
            got.append(task.id)
        return got

    with ThreadPoolExecutor(8) as pool:
        claimed = [task for got in pool.map(take, range(8)) for task in got]
    assert sorted(claimed) == sorted(tasks)

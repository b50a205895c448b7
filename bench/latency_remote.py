"""``bench.latency --remote``: a remote target's latency models built by the service through two of its agents.

The service on 127.0.0.1 (uvicorn, a subprocess, fresh SQLite store), a worker (a `Runner` in this
process), two ``hwnas agent`` processes on this machine for one remote target. A ``build_latency_model``
job (``POST /v1/targets/{name}/models``) for the 32 px preset measures the per-layer table and `samples`
end-to-end subnets through the agents and fits the learned predictor; then `further` random subnets
are queued as measurement tasks (``POST /v1/targets/{name}/tasks``) and the stored models are scored on
what the agents measured. Reported: wall time, tasks per second, tasks queued or measured twice (must
be 0), each agent's share, and the models' MAPE / within ±10% / Kendall τ on the further subnets, beside
the agreement of two measurement passes over those subnets (the noise floor no model can beat).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

TARGET = "bench-board"
AGENTS = ("agent-1", "agent-2")


def _job_tasks(db_url: str, job_id: int) -> list[tuple[str, int | None, str, int | None]]:
    """(key, artefact, status, agent) of every agent task of the job."""
    from sqlalchemy import select

    from store.db import Database
    from store.models import AgentTask

    db = Database(db_url)
    try:
        with db.reader() as s:
            rows = s.scalars(select(AgentTask).where(AgentTask.job_id == job_id)).all()
            return [(r.payload["key"], r.artifact_id, r.status, r.agent_id) for r in rows]
    finally:
        db.dispose()


def _run_job(db_url: str, home: Path, job_id: int) -> None:
    """Claim and run the queued job in this process (the service's worker)."""
    from store.artifacts import LocalArtifactStore
    from store.db import Database
    from store.queue import JobQueue
    from store.settings import Settings
    from workers.runner import Runner

    settings = Settings(home=home, database_url=db_url)
    db = Database(db_url)
    try:
        runner = Runner(JobQueue(db), LocalArtifactStore(settings.artifacts_path), settings.runs_path, lease_s=120)
        done = runner.run_once()
        if done is None or done.id != job_id:
            raise RuntimeError(f"the worker ran {done and done.id} instead of job {job_id}")
    finally:
        db.dispose()


def bench_remote(space: str, samples: int, further: int, seed: int, settings: dict[str, Any]) -> str:
    """Run the remote section (see the module docstring); its Markdown."""
    from bench.agents import local_agents, queue_subnet_tasks, serve, wait_tasks
    from nas.spaces import get_space
    from predictors.latency import latency_metrics
    from store.artifacts import LocalArtifactStore
    from store.settings import Settings
    from workers.kinds.latency import load_latency_model

    with tempfile.TemporaryDirectory(prefix="hwnas-remote-") as tmp, serve(Path(tmp) / "home") as service:
        http = service.client()
        http.post("/v1/targets", json={"name": TARGET, "device": "x86 (two local agents)"}).raise_for_status()
        with local_agents(service, TARGET, AGENTS, Path(tmp) / "logs"):
            start = time.perf_counter()
            body = {"space": space, "samples": samples, "seed": seed, "settings": settings}
            job_id = int(http.post(f"/v1/targets/{TARGET}/models", json=body).json()["id"])
            _run_job(service.db_url, service.home, job_id)
            wall = time.perf_counter() - start
            job = http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] != "SUCCEEDED":
                raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
            known = {s["arch_key"] for s in job["result"]["samples"]}
            preset = get_space(space)
            fresh = [a for a in preset.sample(seed + 1, 2 * further) if preset.key(a) not in known][:further]
            ids = queue_subnet_tasks(http, TARGET, fresh, space, settings)
            tested = wait_tasks(http, TARGET, ids, timeout_s=3600)
            again = wait_tasks(http, TARGET, queue_subnet_tasks(http, TARGET, fresh, space, settings), 3600)
        tasks = _job_tasks(service.db_url, job_id)
        agents = {a["id"]: a["name"] for a in http.get("/v1/agents").json()["items"]}
        models = {m["kind"]: m for m in http.get(f"/v1/targets/{TARGET}/models").json()}
        files = {kind: job["result"]["file" if kind == "lut" else "learned_file"] for kind in models}
        measured = [t["result"]["median_ms"] for t in tested]
        floor = latency_metrics([t["result"]["median_ms"] for t in again], measured)
        store = LocalArtifactStore(Settings(home=service.home).artifacts_path)
        scores = {}
        for kind, file in files.items():
            stored = store.get(file["key"], file["sha256"])
            predicted = load_latency_model(kind, stored).predict(fresh)
            scores[kind] = latency_metrics(predicted, measured)
        http.close()
    keys = Counter(key for key, *_ in tasks)
    models_twice = sum(n - 1 for n in Counter(artifact for _, artifact, *_ in tasks).values() if n > 1)
    duplicates = sum(n - 1 for n in keys.values()) + models_twice
    shares = Counter(agents.get(agent, "?") for *_, agent in tasks)
    failed = [t for t in tested if t["status"] != "DONE"] + [t for t in tasks if t[2] != "DONE"]
    rows = [
        f"| {kind} | {m.n} | {m.mape:.2f} | {100 * m.within_10:.1f} | {m.kendall_tau:.3f} |"
        for kind, m in sorted(scores.items())
    ]
    cv = job["result"]["learned_quality"]
    figures = {"wall_s": round(wall, 1), "tasks": len(tasks), "tasks_per_s": round(len(tasks) / wall, 2),
               "duplicates": duplicates, "failed": len(failed), "shares": dict(shares),
               "floor_within_10": floor.within_10}  # fmt: skip
    print(json.dumps(figures))
    return "\n".join([
        f"Remote target `{TARGET}` (ONNX Runtime CPU EP, 1 thread, batch 1) measured by two `hwnas agent` processes "
        f"on this machine; the service (uvicorn) and a worker on 127.0.0.1. One `build_latency_model` job for "
        f"`{space}`: the per-layer table ({job['result']['entries']} layers) and {samples} end-to-end subnets "
        f"(half spread over MACs, half chosen by the learned predictor), measure settings {json.dumps(settings)}.",
        "",
        f"- job wall time {wall:.0f} s; {len(tasks)} agent tasks, {len(tasks) / wall:.2f} tasks/s; "
        f"tasks queued or models measured twice: {duplicates}; failed: {len(failed)}",
        f"- tasks per agent: {', '.join(f'{name} {n}' for name, n in sorted(shares.items()))}",
        f"- learned predictor, 5-fold cross-validated on its {cv['n']} samples: MAPE {cv['mape']:.2f}%, "
        f"within ±10% {100 * cv['within_10']:.1f}%, Kendall τ {cv['kendall_tau']:.3f}",
        "",
        f"The stored models on {further} further random subnets, measured by the agents afterwards "
        f"(bar: ≥ 95% within ±10%). Noise floor: the same subnets measured a second time by the agents are "
        f"{100 * floor.within_10:.1f}% within ±10% of the first pass (MAPE {floor.mape:.2f}%).",
        "",
        "| model | subnets | MAPE % | within ±10% | Kendall τ |",
        "|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip

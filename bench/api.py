"""REST API load: requests/s and p50/p99 latency of the Pareto query and of search submission.

A real uvicorn server (a subprocess, ``--factory api.app:create_app``) on loopback, on a fresh
SQLite file and a fresh PostgreSQL database (``HWNAS_TEST_PG_URL``, default ``postgres@127.0.0.1:5432``,
dropped afterwards); `--clients` concurrent httpx clients send requests back to back for `--seconds`:
``GET /v1/searches/{id}/pareto`` of a `--points`-point front inserted through the store, and
``POST /v1/searches``. Bar: p99 of the Pareto query <= 50 ms.

    python -m bench.api --seconds 20 --clients 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy.orm import Session

from api.auth import create_token, create_user
from bench.jobs import available_backends, database
from store.db import Database
from store.models import Search, Subnet, Supernet
from store.queue import JobQueue

SPACE = "ofa_mbv3_d234_e346_k357_32px"
CLIENTS = {"wrk": "wrk, 2 threads", "httpx": "httpx, asyncio"}
Figures = tuple[float, float, float, int]
BAR_P99_MS = 50.0


def seed(url: str, points: int) -> tuple[str, int, int]:
    """A user (its token), a supernet, and a finished search whose Pareto front has `points` subnets.

    The front is written the way a search job writes it: in the transaction that completes its job.
    """
    from nas.spaces import get_space

    space = get_space(SPACE)
    db = Database(url)
    user = create_user(db, "bench")
    token = create_token(db, user.id)
    queue = JobQueue(db)
    job, _ = queue.submit("noop", {}, user_id=user.id)
    lease = queue.claim("bench", 60.0)
    assert lease is not None and lease.job_id == job.id

    def persist(s: Session) -> dict[str, Any]:
        supernet = Supernet(user_id=user.id, space=SPACE, dataset="demo", strategy="sandwich", config={"space": SPACE})
        s.add(supernet)
        s.flush()
        search = Search(user_id=user.id, job_id=job.id, supernet_id=supernet.id, objectives=["accuracy", "macs"],
                        directions={"accuracy": "max", "macs": "min"}, algorithm="evolution", budget=1000)  # fmt: skip
        s.add(search)
        s.flush()
        for i, arch in enumerate(space.sample(0, points)):
            values = {"accuracy": 0.5 + i / (2 * points), "macs": 1e6 * (i + 1)}
            s.add(Subnet(user_id=user.id, supernet_id=supernet.id, search_id=search.id, arch_key=space.key(arch),
                         arch=arch, predicted=values, validated=values, pareto_rank=0))  # fmt: skip
        return {"supernet_id": supernet.id, "search_id": search.id}

    result = queue.complete(lease, {}, persist).result or {}
    db.dispose()
    return token, int(result["supernet_id"]), int(result["search_id"])


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    """uvicorn serving the app on `url`'s database; returns once it answers /readyz."""
    env = {**os.environ, "HWNAS_DATABASE_URL": url, "HWNAS_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "warning", "--no-access-log"], env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not become ready in 60 s")


async def load(base: str, token: str, clients: int, seconds: float, request: dict[str, Any]) -> tuple[list[float], int]:
    """`clients` clients sending `request` back to back for `seconds`; latencies (s) and the error count."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=30) as http:  # fmt: skip
        end = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                response = await http.request(**request)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code >= 400

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    """wrk's '12.34ms' / '850.00us' / '1.20s' in ms."""
    value = text.rstrip("mus")
    return float(value) * _UNITS[text[len(value) :]]


def load_wrk(base: str, token: str, clients: int, seconds: float, request: dict[str, Any], workdir: Path) -> Figures:
    """The same load with wrk (C, 2 threads, keep-alive): req/s, p50 and p99 (ms) and the error count."""
    script = workdir / "request.lua"
    body = json.dumps(request.get("json")) if "json" in request else None
    lines = [f'wrk.method = "{request["method"]}"', f'wrk.headers["Authorization"] = "Bearer {token}"']
    if body is not None:
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = {json.dumps(body)}"]
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", str(script), base + request["url"]],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = {m[0]: _ms(m[1]) for m in re.findall(r"^\s*(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M)}
    if set(found) != {"50", "99"}:
        raise RuntimeError(f"could not read wrk's latency distribution from:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, found["50"], found["99"], int(errors.group(1)) if errors else 0


def load_httpx(base: str, token: str, clients: int, seconds: float, request: dict[str, Any], _workdir: Path) -> Figures:
    """The load with httpx clients in this process: req/s, p50 and p99 (ms) and the error count."""
    started = time.perf_counter()
    latencies, errors = asyncio.run(load(base, token, clients, seconds, request))
    ms = np.asarray(latencies) * 1e3
    return len(ms) / (time.perf_counter() - started), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), errors


def measure(backend: str, workdir: Path, args: argparse.Namespace) -> list[tuple[str, str, float, float, float, int]]:
    """The figures of both requests on `backend`: (backend, request, req/s, p50 ms, p99 ms, errors)."""
    rows = []
    with database(backend, workdir) as url:
        token, supernet_id, search_id = seed(url, args.points)
        port = free_port()
        server = start_server(url, workdir / backend, port)
        try:
            requests: dict[str, dict[str, Any]] = {
                f"GET pareto ({args.points} points)": {"method": "GET", "url": f"/v1/searches/{search_id}/pareto"},
                "POST /v1/searches": {"method": "POST", "url": "/v1/searches", "json": {
                    "supernet_id": supernet_id, "objectives": ["accuracy", "macs"], "budget": 100}},
            }  # fmt: skip
            tool = load_wrk if args.client == "wrk" else load_httpx
            for name, request in requests.items():
                rate, p50, p99, errors = tool(f"http://127.0.0.1:{port}", token, args.clients, args.seconds, request,
                                              workdir)  # fmt: skip
                row = (backend, name, rate, p50, p99, errors)
                print(f"{backend}: {name}: {row[2]:.0f} req/s, p50 {row[3]:.1f} ms, p99 {row[4]:.1f} ms, "
                      f"{errors} errors")  # fmt: skip
                rows.append(row)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per request kind")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--points", type=int, default=200, help="Pareto points of the queried search")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--client", choices=["wrk", "httpx"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator: wrk (Debian package wrk; default when installed) or httpx")  # fmt: skip
    parser.add_argument("--no-record", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = parser.parse_args(argv)
    backends = available_backends(args.backends)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnas-bench-api-") as tmp:
        for backend in backends:
            rows += measure(backend, Path(tmp), args)
    lines = ["| database | request | req/s | p50 (ms) | p99 (ms) | errors |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {b} | {n} | {r:.0f} | {p50:.1f} | {p99:.1f} | {e} |" for b, n, r, p50, p99, e in rows]
    pareto_p99 = [p99 for _, n, _, _, p99, _ in rows if n.startswith("GET pareto")]
    verdict = "met" if pareto_p99 and max(pareto_p99) <= BAR_P99_MS else "not met"
    body = (
        f"{args.clients} concurrent clients ({CLIENTS[args.client]}, keep-alive) against one uvicorn worker process on "
        f"loopback, {args.seconds:g} s per request kind, clients and server on the same machine. Bar: p99 of "
        f"the Pareto query <= {BAR_P99_MS:g} ms: {verdict}.\n\n" + "\n".join(lines)
    )
    print(body)
    if not args.no_record:
        from bench.report import record

        record("bench.api", body)


if __name__ == "__main__":
    main()

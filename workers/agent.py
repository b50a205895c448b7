"""``hwnas agent``: measure a target's latency tasks on this device for a remote hwnas service.

Runs where only onnxruntime, numpy and httpx are installed (an ARM board, a phone's host): ``pip install
hwnas`` installs just that, with the console script ``hwnas-agent``; it imports neither torch nor the
service's SQL or web stack. It registers itself for the target with this machine's facts
(`predictors.latency.measure.environment`), then loops: claim a task (an ONNX model + measurement
settings), download and verify the model, measure it with ONNX Runtime, post the result.
Requests go through `workers.http_client` with `AGENT_RETRY`: network errors and transient answers
(408, 425, 429, 5xx) are retried with exponential back-off, so a restarting service is waited out.
When the service no longer knows the agent (a 404 naming ``agent_id``: its store was reset or the
agent deleted), the agent registers again and goes on. Any other 4xx answer is an error the user
must fix (a bad token, an unknown target) and ends the agent.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

import httpx

from predictors.latency.measure import MeasureSettings, environment, measure_onnx
from predictors.latency.targets import Target
from workers.http_client import IDEMPOTENT, HttpClient, RetryPolicy

log = logging.getLogger("hwnas.agent")
AGENT_RETRY = RetryPolicy(
    attempts=9, backoff_s=0.5, max_backoff_s=30.0, statuses=frozenset({408, 425, 429, 500, 502, 503, 504}),
    errors=(httpx.TransportError,),
)  # fmt: skip
"""An agent waits out a service that restarts or is overloaded for about a minute and a half."""


class AgentError(RuntimeError):
    """The service refused a request for a reason retrying cannot fix (the message says which)."""


class UnknownAgentError(AgentError):
    """The service does not know the agent's id (its store was reset, or the agent deleted): register again."""


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_message(response: httpx.Response) -> str:
    body = _error_body(response)
    if not body:
        return f"{response.status_code}: {response.text[:200]}"
    return f"{response.status_code} {body.get('code')}: {body.get('message')}"


class AgentClient:
    """The service's agent endpoints, with retries.

    Every request of the agent may be sent again: registering is an upsert by name, a repeated
    result gets 409 (the agent no longer holds the task: it was recorded), and a repeated claim
    leaves the task of the lost answer leased to this agent until its lease expires, when it is
    claimed again.

    Args:
        server: the service's base URL, e.g. ``https://hwnas.example.org``.
        token: an API token.
        retry: which failures are retried, how often.
        transport: an httpx transport (tests).
    """

    def __init__(
        self, server: str, token: str, *, retry: RetryPolicy = AGENT_RETRY, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.http = HttpClient(
            base_url=server.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=60.0,
            transport=transport, retry=retry,
        )  # fmt: skip

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request (retried as the client's policy says).

        Raises:
            UnknownAgentError: a 404 naming ``agent_id``.
            AgentError: another 4xx answer than 409 (the caller handles 409), or a failure that outlasted the retries.
        """
        try:
            response = self.http.request(method, path, extensions={IDEMPOTENT: True}, **kwargs)
        except httpx.TransportError as error:
            raise AgentError(f"{method} {path}: gave up: {type(error).__name__}: {error}") from None
        if response.status_code == 404 and _error_body(response).get("field") == "agent_id":
            raise UnknownAgentError(f"{method} {path}: {_error_message(response)}")
        if response.status_code >= 400 and response.status_code != 409:
            raise AgentError(f"{method} {path}: {_error_message(response)}")
        return response

    def target(self, name: str) -> Target:
        """The target's measurement spec, as the service knows it."""
        data = self.request("GET", f"/v1/targets/{name}").json()
        allowed = {f.name for f in fields(Target)}
        spec = {k: v for k, v in data["settings"].items() if k in allowed}
        return Target.from_dict({**spec, "name": data["name"], "device": data["device"], "runtime": data["runtime"]})

    def register(self, name: str, target: Target) -> int:
        """Register this agent for `target` with this machine's facts (`environment`); returns the agent's id."""
        body = {"name": name, "targets": [target.name], "environment": environment(target)}
        return int(self.request("POST", "/v1/agents", json=body).json()["id"])

    def claim(self, agent_id: int, target: str, lease_s: float | None = None) -> dict[str, Any] | None:
        """The next task of `target` leased to the agent, or None."""
        body: dict[str, Any] = {"target": target} | ({"lease_s": lease_s} if lease_s else {})
        response = self.request("POST", f"/v1/agents/{agent_id}/claim", json=body)
        return None if response.status_code == 204 else dict(response.json())

    def model(self, task: dict[str, Any]) -> bytes:
        """The task's ONNX model, verified against its sha256."""
        data = self.request("GET", task["model_url"]).content
        digest = hashlib.sha256(data).hexdigest()
        if task.get("model_sha256") and digest != task["model_sha256"]:
            raise AgentError(f"task {task['id']}: model sha256 {digest} != {task['model_sha256']}")
        return data

    def post_result(self, agent_id: int, task_id: int, result: dict[str, Any]) -> bool:
        """Post a task's outcome; False when the service says the agent no longer holds it (409)."""
        response = self.request("POST", f"/v1/agents/{agent_id}/tasks/{task_id}/result", json=result)
        if response.status_code == 409:
            log.warning("task %d: %s", task_id, _error_message(response))
            return False
        return True


def measure_task(task: dict[str, Any], model: bytes, target: Target) -> dict[str, Any]:
    """Measure a task's model; the result body to post (a measurement, or the error)."""
    try:
        settings = MeasureSettings.from_dict(task["settings"])
        return {"measurement": measure_onnx(model, target, settings).to_dict()}
    except Exception as error:
        log.exception("task %s failed", task["id"])
        return {"error": f"{type(error).__name__}: {error}"}


def register(client: AgentClient, name: str, target_name: str) -> tuple[Target, int]:
    """Fetch the target's spec and register the agent for it; the spec and the agent's id."""
    target = client.target(target_name)
    agent_id = client.register(name, target)
    log.info("agent %d (%s) measures %s", agent_id, name, target.name)
    return target, agent_id


def run_agent(
    client: AgentClient,
    target_name: str,
    *,
    name: str | None = None,
    poll_s: float = 2.0,
    lease_s: float | None = None,
    max_tasks: int | None = None,
    idle_exit_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Register and serve tasks; returns how many were measured.

    Args:
        client: the service.
        target_name: the target this device measures.
        name: the agent's name (default: the host name).
        poll_s: the wait between claims when no task is waiting.
        lease_s: the lease to ask for (default: the service's).
        max_tasks: stop after this many tasks (default: never).
        idle_exit_s: stop after this long without a task (default: never).
        sleep: how to wait (tests).

    Raises:
        AgentError: the service refused a request for good (bad token, unknown target, ...).
    """
    name = name or socket.gethostname()
    target, agent_id = register(client, name, target_name)
    done, idle_since = 0, time.monotonic()
    while max_tasks is None or done < max_tasks:
        try:
            task = client.claim(agent_id, target.name, lease_s)
            if task is None:
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                sleep(poll_s)
                continue
            result = measure_task(task, client.model(task), target)
            if client.post_result(agent_id, task["id"], result):
                done += 1
                log.info("task %d: %s", task["id"], result.get("measurement", {}).get("median_ms", result.get("error")))
        except UnknownAgentError as error:
            log.warning("%s; registering again", error)
            target, agent_id = register(client, name, target_name)
        idle_since = time.monotonic()
    return done


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``hwnas agent``."""
    parser = argparse.ArgumentParser(prog="hwnas agent", description="measure latency tasks for a hwnas service")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the agent's options to `parser`."""
    for option, variable, text in (
        ("--server", "HWNAS_SERVER", "the service's URL, e.g. http://10.0.0.5:8000"),
        ("--token", "HWNAS_TOKEN", "an API token (hwnas admin create-token)"),
    ):
        default = os.environ.get(variable)
        parser.add_argument(option, default=default, required=not default, help=f"{text} (default: ${variable})")
    parser.add_argument("--target", required=True, help="the target this device measures, e.g. rpi4-ort")
    parser.add_argument("--name", help="the agent's name (default: the host name)")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between polls when idle")
    parser.add_argument("--lease", type=float, help="seconds a claimed task is ours (default: the server's)")
    parser.add_argument("--max-tasks", type=int, help="exit after this many tasks")
    parser.add_argument("--idle-exit", type=float, help="exit after this many seconds without a task")


def run(args: argparse.Namespace) -> int:
    """Run the agent from parsed arguments; returns the exit code (1 with one line on a service error)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per poll would flood a device's journal
    client = AgentClient(args.server, args.token)
    try:
        done = run_agent(client, args.target, name=args.name, poll_s=args.poll, lease_s=args.lease,
                         max_tasks=args.max_tasks, idle_exit_s=args.idle_exit)  # fmt: skip
    except AgentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    log.info("measured %d tasks", done)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hwnas-agent --server URL --token T --target NAME`` (or ``python -m workers.agent ...``)."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""A small Python client of the hwnas REST API (what the ``hwnas`` CLI uses); it needs only httpx.

Requests go through `workers.http_client.HttpClient`: a request that could not connect, and an
idempotent one that broke off or got 502/503/504, is sent again with back-off (`RetryPolicy`).
Submissions carry an ``Idempotency-Key`` (a fresh one unless given), so they are retried too.

    from cli.client import Client
    with Client("http://127.0.0.1:8000", token) as client:
        search = client.submit_search({"supernet_id": 3, "objectives": ["accuracy", "macs"]})
        for event in client.events(search["job_id"]):
            print(event.event, event.data)
        client.download(client.pareto(search["id"])["points"][0]["subnet_id"], "best.onnx")
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

from workers.http_client import IDEMPOTENCY_HEADER, IDEMPOTENT, HttpClient, RetryPolicy

SHA_HEADER = "X-Content-SHA256"
STREAM_READ_TIMEOUT_S = 60.0  # the server sends a keep-alive comment every 15 s of silence
MAX_RECONNECTS = 5  # consecutive broken streams without a new event before `events` gives up
DownloadFormat = Literal["onnx", "safetensors", "bundle"]
Resource = Literal["searches", "supernets", "jobs", "datasets"]


class ClientError(Exception):
    """The service refused a request (its JSON error), or could not be reached (`status` 0).

    Args:
        status: the HTTP status (0: no response).
        code: the error's machine-readable code, e.g. ``not_found``.
        message: what went wrong.
        field: the request field at fault, if any.
    """

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field and self.field not in self.message else ""
        return f"{self.status} {self.code}{where}: {self.message}" if self.status else self.message

    @classmethod
    def of(cls, response: httpx.Response) -> ClientError:
        """The error of a non-2xx response (JSON ``{code, message, field}``, or whatever the body says)."""
        try:
            body = json.loads(response.read())
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and "message" in body:
            return cls(response.status_code, str(body.get("code", "error")), str(body["message"]), body.get("field"))
        text = response.text.strip().splitlines()[0] if response.text.strip() else response.reason_phrase
        return cls(response.status_code, "error", text)


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job.

    Attributes:
        id: the event's sequence number (resume after it with ``Last-Event-ID``).
        event: ``status``, ``progress`` or ``log``.
        data: the event's JSON payload.
    """

    id: int
    event: str
    data: dict[str, Any]


class Client:
    """The hwnas REST API.

    Args:
        server_url: e.g. ``http://127.0.0.1:8000``.
        token: an API token (``hwnas admin create-token``).
        timeout: seconds to wait for a connection or a response.
        retry: which failed requests are sent again, how often (default: `RetryPolicy()`).
        transport: an httpx transport instead of the network (e.g. ``httpx.MockTransport``).
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.timeout = timeout
        self._http = HttpClient(
            base_url=self.server_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout,
            transport=transport, retry=retry,
        )  # fmt: skip

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_error:
            raise ClientError.of(response)
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ClientError:
        return ClientError(
            0, "unreachable", f"cannot reach the hwnas server at {self.server_url}: {exc or type(exc).__name__}"
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self._request(method, path, **kwargs).json()
        return body

    @staticmethod
    def _key(idempotency_key: str | None) -> dict[str, str]:
        """The ``Idempotency-Key`` header: the given key, or a fresh one that makes this call's retries safe."""
        return {IDEMPOTENCY_HEADER: idempotency_key or uuid.uuid4().hex}

    def submit_supernet(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue the training of a supernet (``POST /v1/supernets``); returns the job.

        A repeat with the same `idempotency_key` returns the first job (default: a fresh key per call).
        """
        return self._json("POST", "/v1/supernets", json=body, headers=self._key(idempotency_key))

    def submit_search(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a search (``POST /v1/searches``); returns the search (its ``job_id`` is the job to watch).

        A repeat with the same `idempotency_key` returns the first search (default: a fresh key per call).
        """
        return self._json("POST", "/v1/searches", json=body, headers=self._key(idempotency_key))

    def build_latency_model(
        self, target: str, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue a target's latency models (``POST /v1/targets/{target}/models``); returns the job."""
        return self._json("POST", f"/v1/targets/{target}/models", json=body, headers=self._key(idempotency_key))

    def finetune_subnet(
        self, subnet_id: int, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue the fine-tuning of a subnet (``POST /v1/subnets/{subnet_id}/finetune``); returns the job.

        The job's result names the new subnet (``subnet_id``). A repeat with the same
        `idempotency_key` returns the first job (default: a fresh key per call).
        """
        return self._json("POST", f"/v1/subnets/{subnet_id}/finetune", json=body, headers=self._key(idempotency_key))

    def latency_models(self, target: str) -> list[dict[str, Any]]:
        """The target's latency models with their quality (``GET /v1/targets/{target}/models``)."""
        models: list[dict[str, Any]] = self._request("GET", f"/v1/targets/{target}/models").json()
        return models

    def upload_dataset(
        self, path: str | os.PathLike[str], *, name: str = "", format: str | None = None
    ) -> dict[str, Any]:
        """Upload a dataset file (``POST /v1/datasets``); returns the stored dataset.

        The service validates it before answering; uploading the same file again returns the first
        dataset, so a retried upload is harmless.
        """
        params = {"name": name, **({"format": format} if format else {})}
        return self._json(
            "POST", "/v1/datasets", content=Path(path).read_bytes(), params=params,
            headers={"Content-Type": "application/octet-stream"}, extensions={IDEMPOTENT: True},
        )  # fmt: skip

    def upload_checkpoint(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload a pretrained checkpoint (``POST /v1/checkpoints``); returns the stored checkpoint.

        The service checks it (weights only, a registered space) before answering; uploading the
        same file again returns the first one, so a retried upload is harmless.
        """
        return self._json(
            "POST", "/v1/checkpoints", content=Path(path).read_bytes(),
            headers={"Content-Type": "application/octet-stream"}, extensions={IDEMPOTENT: True},
        )  # fmt: skip

    def job(self, job_id: int) -> dict[str, Any]:
        """A job: status, progress, result or error."""
        return self._json("GET", f"/v1/jobs/{job_id}")

    def search(self, search_id: int) -> dict[str, Any]:
        """A search and its job's status."""
        return self._json("GET", f"/v1/searches/{search_id}")

    def supernet(self, supernet_id: int) -> dict[str, Any]:
        """A trained supernet."""
        return self._json("GET", f"/v1/supernets/{supernet_id}")

    def subnet(self, subnet_id: int) -> dict[str, Any]:
        """A subnet: arch, objective values, download link."""
        return self._json("GET", f"/v1/subnets/{subnet_id}")

    def list(
        self,
        resource: Resource,
        *,
        page_size: int = 50,
        page_token: str | None = None,
        kind: str | None = None,
        status: str | None = None,
    ) -> dict[str, Any]:
        """One page of your searches, supernets or jobs, newest first: ``{items, next_page_token}``.

        Args:
            resource: what to list.
            page_size: items per page (1-200).
            page_token: the previous page's ``next_page_token``.
            kind: jobs only: only jobs of this kind, e.g. ``search``.
            status: jobs only: only jobs in this status, e.g. ``RUNNING``.
        """
        given = {"page_token": page_token, "kind": kind, "status": status}
        params: dict[str, Any] = {"page_size": page_size, **{k: v for k, v in given.items() if v is not None}}
        return self._json("GET", f"/v1/{resource}", params=params)

    def cancel(self, search_id: int) -> dict[str, Any]:
        """Ask a search to stop; returns the search with its job's new status."""
        return self._json("POST", f"/v1/searches/{search_id}/cancel", extensions={IDEMPOTENT: True})

    def pareto(self, search_id: int) -> dict[str, Any]:
        """The search's Pareto front: ``{search_id, status, objectives, directions, points}``."""
        return self._json("GET", f"/v1/searches/{search_id}/pareto")

    def pareto_csv(self, search_id: int) -> str:
        """The search's Pareto front as CSV text."""
        return self._request("GET", f"/v1/searches/{search_id}/pareto", params={"format": "csv"}).text

    def events(self, job_id: int, *, last_event_id: int | None = None, follow: bool = True) -> Iterator[Event]:
        """The job's events after `last_event_id`; with `follow`, until the job has ended.

        A dropped connection is resumed with ``Last-Event-ID``, so no event is repeated or lost.

        Raises:
            ClientError: the service refused the request, or cannot be reached.
        """
        last, failures = last_event_id, 0
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT_S))
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            params = {"follow": "true" if follow else "false"}
            try:
                with self._http.stream(
                    "GET", f"/v1/jobs/{job_id}/events", headers=headers, params=params, timeout=timeout
                ) as response:
                    if response.is_error:
                        raise ClientError.of(response)
                    for event in parse_sse(response.iter_lines()):
                        last, failures = event.id, 0
                        yield event
                return
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout) as exc:
                failures += 1  # the stream broke: resume after the last event we saw
                if failures > MAX_RECONNECTS:
                    raise self._unreachable(exc) from None
            except httpx.TransportError as exc:
                raise self._unreachable(exc) from None

    def download(self, subnet_id: int, path: str | os.PathLike[str], *, format: DownloadFormat = "onnx") -> str:
        """Stream a subnet to `path` (ONNX, safetensors, or the zipped bundle) and check its sha256.

        Returns:
            The file's sha256 (hex), equal to the server's ``X-Content-SHA256``.

        Raises:
            ClientError: the service refused, or the bytes do not match the header (``checksum_mismatch``;
                nothing is left at `path`).
        """
        out = Path(path)
        partial = out.with_name(out.name + ".part")
        digest, started = hashlib.sha256(), False
        try:
            with self._http.stream("GET", f"/v1/subnets/{subnet_id}/download", params={"format": format}) as response:
                if response.is_error:
                    raise ClientError.of(response)
                started, expected = True, response.headers.get(SHA_HEADER)
                with partial.open("wb") as fp:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        fp.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            if not started:
                raise self._unreachable(exc) from None
            raise ClientError(0, "transfer_failed", f"the download of subnet {subnet_id} broke off: {exc}") from None
        if expected is None or digest.hexdigest() != expected.lower():
            partial.unlink(missing_ok=True)
            raise ClientError(
                200, "checksum_mismatch", f"subnet {subnet_id}: sha256 {digest.hexdigest()} != {SHA_HEADER} {expected}"
            )
        partial.replace(out)
        return digest.hexdigest()


def parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """The events of a ``text/event-stream`` (comments and ``retry`` lines skipped; data parsed as JSON)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                data = json.loads(fields["data"])
                yield Event(
                    int(fields.get("id", 0)),
                    fields.get("event", "message"),
                    data if isinstance(data, dict) else {"data": data},
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value

"""``hwnas ls supernets|searches|jobs|datasets``: your resources, newest first, as a table (plain off a terminal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from cli.commands.jobs import JsonOption, result_ids, took
from cli.console import CLIError, console, err_console, print_rows
from cli.options import ServerOption, TokenOption, make_client

if TYPE_CHECKING:
    from cli.client import Resource

Row = Callable[[dict[str, Any]], list[str]]


def _when(value: str | None) -> str:
    """An API timestamp to the second, ``2025-01-01 10:00:00`` (UTC)."""
    return value[:19].replace("T", " ") if value else "-"


def _figure(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _bound(name: str, bound: float | list[float | None]) -> str:
    """A constraint as ``hwnas submit search --constraint`` takes it: ``NAME=BOUND`` or ``NAME=LOW:HIGH``."""
    if isinstance(bound, list):
        return f"{name}={':'.join('' if b is None else f'{b:g}' for b in bound)}"
    return f"{name}={bound:g}"


def _supernet(r: dict[str, Any]) -> list[str]:
    metrics = r.get("metrics") or {}
    return [str(r["id"]), r["name"] or "-", r["space"], r["dataset"], r["strategy"], _figure(metrics.get("epochs")),
            _figure(metrics.get("final_loss")), _when(r["created_at"])]  # fmt: skip


def _search(r: dict[str, Any]) -> list[str]:
    constraints = " ".join(_bound(k, v) for k, v in r["constraints"].items()) or "-"
    return [str(r["id"]), str(r["supernet_id"]), r["status"] or "-", r["algorithm"], ",".join(r["objectives"]),
            constraints, str(r["budget"]), _figure(r.get("hypervolume")), _when(r["created_at"])]  # fmt: skip


def _job(r: dict[str, Any]) -> list[str]:
    error = r.get("error") or {}
    outcome = f"{error.get('code')}: {error.get('message')}" if error else "; ".join(result_ids(r.get("result")))
    return [str(r["id"]), r["kind"], r["status"], f"{r['attempts']}/{r['max_attempts']}", _when(r["created_at"]),
            took(r) or "-", outcome or "-"]  # fmt: skip


def _dataset(r: dict[str, Any]) -> list[str]:
    return [str(r["id"]), r["name"] or "-", r["format"], f"{r['train_images']:,}", f"{r['test_images']:,}",
            f"{r['image_size']}px x{r['channels']}", str(r["num_classes"]), _when(r["created_at"])]  # fmt: skip


COLUMNS: dict[str, tuple[tuple[str, ...], Row]] = {
    "supernets": (("id", "name", "space", "dataset", "strategy", "epochs", "final loss", "created"), _supernet),
    "searches": (
        ("id", "supernet", "status", "algorithm", "objectives", "constraints", "budget", "hypervolume", "created"),
        _search,
    ),
    "jobs": (("id", "kind", "status", "attempts", "created", "took", "result"), _job),
    "datasets": (("id", "name", "format", "train", "test", "size", "classes", "created"), _dataset),
}
"""Per resource: the columns and how a listed item fills them."""


def ls(
    resource: Annotated[str, typer.Argument(metavar="RESOURCE", help="supernets, searches, jobs or datasets")],
    kind: Annotated[str | None, typer.Option(help="jobs only: this kind (train_supernet, search, ...)")] = None,
    status: Annotated[str | None, typer.Option(help="jobs only: this status (QUEUED, RUNNING, FAILED, ...)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="at most this many, newest first")] = 50,
    page_token: Annotated[str | None, typer.Option(help="the next page, as the previous listing printed it")] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List your supernets, searches, jobs or datasets, newest first (jobs: --kind, --status)."""
    if resource not in COLUMNS:
        raise CLIError(f"RESOURCE: expected {', '.join(COLUMNS)}, got {resource!r}")
    if resource != "jobs" and (kind or status):
        raise CLIError("--kind and --status filter jobs only: hwnas ls jobs --kind search --status RUNNING")
    status = status.upper() if status else None
    with make_client(server, token) as client:
        page = client.list(cast("Resource", resource), page_size=limit, page_token=page_token, kind=kind, status=status)
    if as_json:
        console.print_json(data=page)
        return
    columns, row = COLUMNS[resource]
    if page["items"]:
        print_rows(columns, [row(item) for item in page["items"]], title=f"your {resource}, newest first")
    else:
        console.print(f"no {resource}" + (" on this page" if page_token else ""))
    if page["next_page_token"]:
        options = "".join(f" --{k} {v}" for k, v in (("kind", kind), ("status", status), ("limit", limit)) if v)
        err_console.print(f"more: hwnas ls {resource}{options} --page-token {page['next_page_token']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``ls`` to `app`."""
    app.command("ls")(ls)

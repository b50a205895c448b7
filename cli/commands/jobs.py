"""The client commands: ``submit``, ``status``, ``watch``, ``pareto``, ``download``, ``cancel`` (over `cli.client`)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from cli.console import CLIError, console, duration, err_console
from cli.options import ServerOption, TokenOption, make_client

if TYPE_CHECKING:
    from rich.console import Console

    from cli.client import Client

FileOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="a JSON request body; the other options override its fields")
]
KeyOption = Annotated[str | None, typer.Option(help="Idempotency-Key: a retry with the same key returns the same job")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the raw JSON")]
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def read_body(path: Path | None) -> dict[str, Any]:
    """The JSON object in `path` (empty without one)."""
    if path is None:
        return {}
    try:
        body = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CLIError(f"--file {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(body, dict):
        raise CLIError(f"--file {path}: expected a JSON object, got {type(body).__name__}")
    return body


def pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict, or a `CLIError` naming `option`."""
    out = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise CLIError(f"{option}: expected NAME=VALUE, got {value!r}")
        out[name] = rest
    return out


def bound(text: str, name: str) -> float | list[float | None]:
    """A constraint: ``8`` (a number) or ``LOW:HIGH`` (either side may be empty)."""
    try:
        if ":" not in text:
            return float(text)
        low, high = text.split(":", 1)
        return [float(low) if low else None, float(high) if high else None]
    except ValueError:
        raise CLIError(f"--constraint {name}: expected a number or LOW:HIGH, got {text!r}") from None


def _overlay(body: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {**body, **{k: v for k, v in values.items() if v is not None and v != [] and v != {}}}


def init_source(client: Client, text: str) -> dict[str, Any]:
    """``--init-from`` as ``config.init_from``: ``supernet:N``, a local file (uploaded now), or a server path."""
    kind, _, ident = text.partition(":")
    if kind == "supernet":
        if not ident.isdigit():
            raise CLIError(f"--init-from: expected supernet:N with N a supernet id, got {text!r}")
        return {"supernet_id": int(ident)}
    if Path(text).is_file():
        stored = client.upload_checkpoint(text)
        console.print(f"uploaded {text} as checkpoint {stored['id']} ({stored['space']}, "
                      f"{stored['in_channels']} channel(s), {stored['num_classes']} classes)")  # fmt: skip
        return {"artifact_id": stored["id"]}
    return {"checkpoint": text}


submit = typer.Typer(help="Queue a supernet training or a search on the service.", no_args_is_help=True)


@submit.command("supernet")
def submit_supernet(
    file: FileOption = None,
    name: Annotated[str | None, typer.Option(help="a label for the supernet")] = None,
    space: Annotated[str | None, typer.Option(help="search-space preset")] = None,
    dataset: Annotated[str | None, typer.Option(help="a built-in dataset: demo, fashion_mnist, mnist, cifar10")] = None,
    dataset_id: Annotated[
        int | None, typer.Option(help="an uploaded dataset of yours (hwnas dataset upload FILE)")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="sandwich or progressive_shrinking")] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    init_from: Annotated[
        str | None,
        typer.Option(
            help="start from pretrained weights: a checkpoint file here (uploaded first, e.g. OFA's .pth), "
            "supernet:N (a supernet of yours), or a path on the server (inside its data roots)"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray Train workers, data-parallel (default 1: the job's own process)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu (default) or cuda: one GPU per worker")] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="CPUs each worker asks Ray for (default 1)")] = None,
    idempotency_key: KeyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Queue the training of a supernet (POST /v1/supernets); prints the job id."""
    body = read_body(file)
    config = _overlay(dict(body.get("config") or {}), space=space, dataset=dataset, strategy=strategy, epochs=epochs,
                      batch_size=batch_size, lr=lr, seed=seed)  # fmt: skip
    with make_client(server, token) as client:
        if init_from is not None:
            config["init_from"] = init_source(client, init_from)
        body = _overlay(body, name=name, config=config, dataset_id=dataset_id, workers=workers, device=device,
                        cpus_per_worker=cpus_per_worker)  # fmt: skip
        job = client.submit_supernet(body, idempotency_key=idempotency_key)
    console.print(f"queued job {job['id']} ({job['kind']}, {job['status']}); follow it with: hwnas watch {job['id']}")


@submit.command("search")
def submit_search(
    file: FileOption = None,
    supernet: Annotated[int | None, typer.Option("--supernet", help="supernet_id: a trained supernet of yours")] = None,
    objective: Annotated[
        list[str] | None, typer.Option("--objective", "-o", help="accuracy, macs, params, latency[:TARGET]; repeat")
    ] = None,
    direction: Annotated[list[str] | None, typer.Option(help="OBJECTIVE=min|max; repeat")] = None,
    constraint: Annotated[
        list[str] | None, typer.Option(help="OBJECTIVE=BOUND or OBJECTIVE=LOW:HIGH, e.g. latency=8; repeat")
    ] = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t", help="a latency target; repeat")] = None,
    algorithm: Annotated[str | None, typer.Option(help="evolution, nsga2, random, ...")] = None,
    budget: Annotated[int | None, typer.Option(help="objective evaluations")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    idempotency_key: KeyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Queue a search of a supernet (POST /v1/searches); prints the search and job ids."""
    constraints = {k: bound(v, k) for k, v in pairs(constraint, "--constraint").items()}
    body = _overlay(
        read_body(file), supernet_id=supernet, objectives=objective, directions=pairs(direction, "--direction"),
        constraints=constraints, targets=target, algorithm=algorithm, budget=budget, seed=seed,
    )  # fmt: skip
    with make_client(server, token) as client:
        search = client.submit_search(body, idempotency_key=idempotency_key)
    console.print(
        f"queued search {search['id']} (job {search['job_id']}, {search['status']}); "
        f"follow it with: hwnas watch {search['job_id']}"
    )


def _show(title: str, record: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in record.items():
        if value is not None and value != {} and value != []:
            table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


def parse_ref(text: str) -> tuple[Literal["job", "search", "supernet", "subnet"], int]:
    """``17`` / ``job:17``, ``search:5``, ``supernet:3``, ``subnet:42`` as (kind, id)."""
    kind, _, ident = text.rpartition(":")
    kind = kind or "job"
    if kind not in ("job", "search", "supernet", "subnet") or not ident.isdigit():
        raise CLIError(f"expected JOB_ID or job:ID, search:ID, supernet:ID, subnet:ID; got {text!r}")
    return kind, int(ident)  # type: ignore[return-value]


def status(
    ref: Annotated[
        str, typer.Argument(metavar="JOB_OR_SEARCH", help="a job id, or search:ID (also supernet:ID, subnet:ID)")
    ],
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Show a job (status, progress, result, error) or a search, supernet or subnet."""
    kind, ident = parse_ref(ref)
    with make_client(server, token) as client:
        record = {"job": client.job, "search": client.search, "supernet": client.supernet, "subnet": client.subnet}[
            kind
        ](ident)
    if as_json:
        console.print_json(data=record)
    else:
        _show(f"{kind} {ident}", record)


def follow(client: Client, job_id: int, out: Console = console) -> dict[str, Any]:
    """Show the job's events on `out` (live bars, or lines off a terminal) until it ends; returns the job."""
    from cli.progress import StageProgress

    with StageProgress(out) as bars:
        for event in client.events(job_id):
            if event.event == "progress":
                bars(event.event, event.data)
            elif event.event == "status":
                bars.log(
                    f"[bold]{event.data.get('status')}[/]"
                    + (f" ({event.data['reason']})" if event.data.get("reason") else "")
                )
            elif event.event == "log":
                bars.log(str(event.data.get("message", event.data)))
        job = client.job(job_id)
        if job["status"] == "SUCCEEDED":
            bars.finish()
    return job


def took(job: dict[str, Any]) -> str | None:
    """How long an ended job ran (``3m 05s``), or None when it did not start or has not ended."""
    if not job.get("started_at") or not job.get("finished_at"):
        return None
    started, finished = (dt.datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return duration((finished - started).total_seconds())


def result_ids(result: dict[str, Any] | None) -> list[str]:
    """What a job's result made, from its ``*_id`` and ``*_ids`` fields: ``["search 5", "subnets 12, 13, 14"]``."""
    made = []
    for key, value in (result or {}).items():
        if key.endswith("_ids") and isinstance(value, list):
            shown = ", ".join(map(str, value)) if len(value) <= 8 else f"{value[0]}..{value[-1]} ({len(value)})"
            made.append(f"{key.removesuffix('_ids')}s {shown or 'none'}")
        elif key.endswith("_id") and value is not None:
            made.append(f"{key.removesuffix('_id')} {value}")
    return made


def summary(job: dict[str, Any]) -> list[str]:
    """A job in a few lines: status and run time, what it made, its scalar figures and list sizes, its texts.

    Nested objects (histories of figures, per-member details) are left to ``--json``.
    """
    ran = took(job)
    lines = [f"job {job['id']} ({job['kind']}) {job['status']}" + (f" in {ran}" if ran else "")]
    figures, texts = [], []
    for key, value in (job.get("result") or {}).items():
        if value is None or isinstance(value, dict) or key.endswith(("_id", "_ids")):
            continue
        if isinstance(value, list):
            figures.append(f"{key} {len(value)}")
        elif isinstance(value, float):
            figures.append(f"{key} {value:.4g}")
        elif isinstance(value, str):
            texts.append(f"{key}: {value}")
        else:
            figures.append(f"{key} {value}")
    made = result_ids(job.get("result"))
    return lines + ["  " + "; ".join(part) for part in (made, figures) if part] + ["  " + t for t in texts]


def succeeded(job: dict[str, Any]) -> dict[str, Any]:
    """The ended job if it succeeded.

    Raises:
        CLIError: it did not; the line names its status and error.
    """
    if job["status"] != "SUCCEEDED":
        error = job.get("error") or {}
        detail = f": {error.get('code')}: {error.get('message')}" if error else ""
        raise CLIError(f"job {job['id']} {job['status']}{detail}")
    return job


def queued_then_followed(client: Client, job: dict[str, Any], wait: bool) -> dict[str, Any] | None:
    """Say that `job` is queued; with `wait`, follow it to its end and return it if it succeeded (else None).

    Raises:
        CLIError: with `wait`, the job did not succeed.
    """
    console.print(f"queued job {job['id']} ({job['kind']}, {job['status']}); follow it with: hwnas watch {job['id']}")
    return succeeded(follow(client, job["id"], console)) if wait else None


def watch(
    job_id: Annotated[int, typer.Argument(help="the job (a search's job_id, or a training job)")],
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Follow a job's progress live until it ends, then summarise it (--json: the job as JSON, progress on stderr).

    Exits 1 unless the job succeeded.
    """
    with make_client(server, token) as client:
        job = follow(client, job_id, err_console if as_json else console)
    if as_json:
        console.print_json(data=job)
    succeeded(job)
    if not as_json:
        for line in summary(job):
            console.print(line, markup=False, highlight=False)


def front_table(points: list[dict[str, Any]], objectives: list[str], title: str) -> Any:
    """A rich table of Pareto points (``predicted`` / ``validated`` values per objective)."""
    from rich.table import Table

    table = Table(title=title)
    has_ids = any("subnet_id" in p for p in points)
    for column in (*(["subnet"] if has_ids else []), "arch key", "px", *(f"{o}\n(pred / valid)" for o in objectives)):
        table.add_column(column, no_wrap=True)
    for p in points:
        cells = [_pair(p, o) for o in objectives]
        arch = p.get("arch") or {}
        table.add_row(
            *([str(p.get("subnet_id", ""))] if has_ids else []),
            str(p.get("arch_key", "")),
            str(arch.get("r", "")),
            *cells,
        )
    return table


def _pair(point: dict[str, Any], objective: str) -> str:
    values = [(point.get(kind) or {}).get(objective) for kind in ("predicted", "validated")]
    return " / ".join("-" if v is None else f"{v:.4g}" for v in values)


def pareto(
    search_id: Annotated[int, typer.Argument(help="the search")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    plot: Annotated[Path | None, typer.Option(help="also draw the front into this image, e.g. pareto.png")] = None,
    x: Annotated[str | None, typer.Option(help="the plot's x objective (default: the second objective)")] = None,
    y: Annotated[str | None, typer.Option(help="the plot's y objective (default: the first objective)")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print a search's Pareto front (a table, CSV or JSON); --plot draws it. An empty front is one line saying why."""
    if format not in ("table", "csv", "json"):
        raise CLIError(f"--format: expected table, csv or json, got {format!r}")
    with make_client(server, token) as client:
        if format == "csv":
            print(client.pareto_csv(search_id), end="")
            front = client.pareto(search_id) if plot else None
        else:
            front = client.pareto(search_id)
    if front is None:
        return
    if format == "json":
        console.print_json(data=front)
    if not front["points"]:
        why = front.get("empty_reason") or f"the search is {front['status']}"
        line = f"search {search_id}: empty Pareto front ({why})" + ("; no plot written" if plot else "")
        (console if format == "table" else err_console).print(line, highlight=False, markup=False)
        return
    if format == "table":
        title = f"Pareto front of search {search_id} ({front['status']}, {len(front['points'])} points)"
        console.print(front_table(front["points"], front["objectives"], title))
    if plot:
        from cli.plot import plot_pareto

        objectives = front["objectives"]
        if len(objectives) < 2 and (x is None or y is None):
            raise CLIError("--plot needs two objectives: pass --x and --y")
        path = plot_pareto(front["points"], x or objectives[1], y or objectives[0], plot, title=f"search {search_id}")
        console.print(f"wrote {path}")


def download(
    subnet_id: Annotated[int, typer.Argument(help="the subnet (see `hwnas pareto`)")],
    format: Annotated[str, typer.Option("--format", help="onnx, safetensors or bundle (a zip)")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="where to write (default: subnet-ID.EXT)")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Download a subnet; its sha256 is checked against the server's."""
    if format not in ("onnx", "safetensors", "bundle"):
        raise CLIError(f"--format: expected onnx, safetensors or bundle, got {format!r}")
    path = out or Path(f"subnet-{subnet_id}.{'zip' if format == 'bundle' else format}")
    with make_client(server, token) as client:
        digest = client.download(subnet_id, path, format=format)  # type: ignore[arg-type]
    console.print(f"wrote {path} ({path.stat().st_size:,} bytes, sha256 {digest})", highlight=False)


def cancel(
    search_id: Annotated[int, typer.Argument(help="the search")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Ask a search to stop."""
    with make_client(server, token) as client:
        search = client.cancel(search_id)
    console.print(f"search {search_id}: {search['status']}")


def register(app: typer.Typer) -> None:
    """Add the client commands to `app`."""
    app.add_typer(submit, name="submit")
    app.command("status")(status)
    app.command("watch")(watch)
    app.command("pareto")(pareto)
    app.command("download")(download)
    app.command("cancel")(cancel)

"""``hwnas target``: build a target's latency models on its device (``build``), list them (``models``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.commands.jobs import KeyOption, queued_then_followed
from cli.console import console
from cli.options import ServerOption, TokenOption, make_client

target = typer.Typer(
    help="Latency targets: build their latency models on their devices, list them.", no_args_is_help=True
)


def quality_line(label: str, quality: dict[str, Any] | None) -> str:
    """A model's quality in one line: MAPE, share within ±10%, Kendall τ, on how many samples."""
    if not quality:
        return f"{label}: no quality (fewer than 2 end-to-end samples)"
    return (
        f"{label}: MAPE {quality['mape']:.1f}%, within ±10% {100 * quality['within_10']:.0f}%, "
        f"Kendall τ {quality['kendall_tau']:.2f} on {quality['n']} end-to-end samples"
    )


@target.command("build")
def build(
    name: Annotated[str, typer.Argument(help="the target, e.g. cpu-ort or a board of yours measured by its agents")],
    space: Annotated[str, typer.Option(help="the search-space preset the models price")],
    samples: Annotated[int | None, typer.Option(help="subnets measured end to end (default 100)")] = None,
    resolution: Annotated[
        list[int] | None, typer.Option(help="a resolution of the space; repeat (default: all)")
    ] = None,
    table: Annotated[bool, typer.Option(help="measure the per-layer lookup table")] = True,
    learned: Annotated[bool, typer.Option(help="fit the learned predictor on the end-to-end samples")] = True,
    seed: Annotated[int | None, typer.Option()] = None,
    wait: Annotated[bool, typer.Option(help="follow the job until it ends and print the models' quality")] = True,
    idempotency_key: KeyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Queue a build_latency_model job (POST /v1/targets/NAME/models): a remote target's agents measure it.

    Exits 1 unless the job succeeded (with --wait).
    """
    body: dict[str, Any] = {"space": space, "table": table, "learned": learned}
    body |= {k: v for k, v in {"samples": samples, "resolutions": resolution, "seed": seed}.items() if v}
    with make_client(server, token) as client:
        job = queued_then_followed(
            client, client.build_latency_model(name, body, idempotency_key=idempotency_key), wait
        )
    if job is None:
        return
    result = job["result"]
    lines = [f"{name}: {len(result['samples'])} subnets measured end to end"]
    if result.get("file"):
        lines.append(quality_line(f"lookup table ({result['entries']} layers)", result.get("quality")))
    if result.get("learned_file"):
        lines.append(quality_line("learned predictor (5-fold cross-validated)", result.get("learned_quality")))
    for line in lines:
        console.print(line, markup=False, highlight=False)


@target.command("models")
def models(
    name: Annotated[str, typer.Argument(help="the target")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The target's latency models with their quality; searches use the one marked (learned > lut > imported)."""
    with make_client(server, token) as client:
        rows = client.latency_models(name)
    if not rows:
        console.print(f"{name}: no latency models; build some with: hwnas target build {name} --space SPACE")
        return
    for row in rows:
        used = ", used by searches" if row["used_by_searches"] else ""
        label = f"model {row['id']} ({row['kind']}, {row['space']}{used})"
        console.print(quality_line(label, row.get("quality")), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``target`` to `app`."""
    app.add_typer(target, name="target")

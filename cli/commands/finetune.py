"""``hwnas finetune``: fine-tune a delivered subnet and compare the new subnet's measured figures with its parent's."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.commands.jobs import KeyOption, queued_then_followed
from cli.console import console
from cli.options import ServerOption, TokenOption, make_client


def comparison(new: dict[str, Any], parent: dict[str, Any]) -> list[str]:
    """The new subnet's validated accuracy and latencies, each beside its parent's (``-`` where it has none)."""
    ours, theirs = new.get("validated") or {}, parent.get("validated") or {}
    lines = [f"subnet {new['id']} (fine-tuned from subnet {parent['id']}); download: hwnas download {new['id']}"]
    for name in [k for k in ours if k == "accuracy" or k.startswith("latency:")]:
        unit, digits = ("", 4) if name == "accuracy" else (" ms", 3)
        before = f"{theirs[name]:.{digits}f}{unit}" if name in theirs else "-"
        lines.append(f"  {name}: {ours[name]:.{digits}f}{unit} (parent {before})")
    return lines


def finetune(
    subnet_id: Annotated[int, typer.Argument(help="the subnet to fine-tune (from a search's front or an export)")],
    epochs: Annotated[int, typer.Option(help="epochs over the supernet's training data")] = 3,
    lr: Annotated[float | None, typer.Option(help="peak learning rate (default 0.01)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="default: the space preset's training batch")] = None,
    kd_ratio: Annotated[float | None, typer.Option(help="weight of the distillation from the largest subnet")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(help="a target to measure the latency on; repeat (default: the parent's search's, else cpu-ort)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the job, then print the new subnet beside its parent")] = False,
    idempotency_key: KeyOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Queue a finetune_subnet job (POST /v1/subnets/SUBNET_ID/finetune): a new subnet, measured on its own bundle.

    Exits 1 unless the job succeeded (with --wait).
    """
    options = {"lr": lr, "batch_size": batch_size, "kd_ratio": kd_ratio, "seed": seed, "targets": target}
    body: dict[str, Any] = {"epochs": epochs} | {k: v for k, v in options.items() if v is not None}
    with make_client(server, token) as client:
        job = queued_then_followed(
            client, client.finetune_subnet(subnet_id, body, idempotency_key=idempotency_key), wait
        )
        if job is None:
            return
        new, parent = client.subnet(job["result"]["subnet_id"]), client.subnet(subnet_id)
    for line in comparison(new, parent):
        console.print(line, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``finetune`` to `app`."""
    app.command("finetune")(finetune)

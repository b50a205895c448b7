"""``hwnas dataset upload``: bring your own data to the service (``POST /v1/datasets``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from cli.commands.jobs import JsonOption
from cli.console import CLIError, console
from cli.options import ServerOption, TokenOption, make_client

dataset = typer.Typer(help="Upload datasets to the service and train on them by id.", no_args_is_help=True)

FILE_HELP = "a .npz, a zip of train/<class>/ and test/<class>/ images, or a zip of the four IDX files"


@dataset.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(help=FILE_HELP)],
    name: Annotated[str | None, typer.Option(help="a label (default: the file's name)")] = None,
    format: Annotated[str | None, typer.Option(help="npz, imagefolder or idx (default: detected)")] = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a dataset; the service checks it before accepting it and prints its id."""
    if not file.is_file():
        raise CLIError(f"FILE: {file} is not a file")
    from api.schemas.datasets import UploadFormat  # here: pydantic would slow every command's start

    formats = get_args(UploadFormat)
    if format is not None and format not in formats:
        raise CLIError(f"--format: expected {', '.join(formats)}, got {format!r}")
    with make_client(server, token) as client:
        stored = client.upload_dataset(file, name=file.stem if name is None else name, format=format)
    if as_json:
        console.print_json(data=stored)
        return
    console.print(
        f"dataset {stored['id']} ({stored['format']}): {stored['train_images']:,} training and "
        f"{stored['test_images']:,} test images of {stored['image_size']} px, {stored['channels']} channel(s), "
        f"{stored['num_classes']} classes; sha256 {stored['upload_sha256']}",
        highlight=False,
    )
    console.print(f"train on it with: hwnas submit supernet --dataset-id {stored['id']}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``dataset`` to `app`."""
    app.add_typer(dataset, name="dataset")

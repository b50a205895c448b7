"""The options of the commands that talk to a server (``--server``, ``--token``) and the client they make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cli.console import CLIError

if TYPE_CHECKING:
    from cli.client import Client

ServerOption = Annotated[str | None, typer.Option("--server", envvar="HWNAS_SERVER", help="the service's URL")]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="HWNAS_TOKEN", help="an API token", show_default=False)
]


def make_client(server: str | None, token: str | None) -> Client:
    """A client of `server` with `token`, or a `CLIError` naming what is missing."""
    from cli.client import Client

    if not server:
        raise CLIError("no server: pass --server URL or set HWNAS_SERVER")
    if not token:
        raise CLIError("no API token: pass --token or set HWNAS_TOKEN (hwnas admin create-token prints one)")
    return Client(server, token)

"""The ``hwnas`` command line (typer + rich).

Command groups: `cli.commands.science` (``spaces``, ``export``, ``train``), `cli.commands.quickstart`,
`cli.commands.service` (``serve``, ``worker``, ``agent``, ``admin``), `cli.commands.jobs` (``submit``,
``status``, ``watch``, ``pareto``, ``download``, ``cancel``, over `cli.client`), `cli.commands.listing`
(``ls``), `cli.commands.datasets` (``dataset upload``) and `cli.commands.targets` (``target build``,
``target models``). Heavy modules are imported inside the commands. The CLI needs the ``service``
extra; a device's light install (``pip install hwnas``) has ``hwnas-agent`` only. A user error (bad
input, an HTTP 4xx, an unreachable server) prints one ``error:`` line and exits 1. Output to a file or
a pipe is plain: no wrapped lines, a line per progress step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

try:
    import typer
    from rich.markup import escape
except ModuleNotFoundError as missing:  # the light install of a device: the agent only
    raise SystemExit(
        f"hwnas: {missing.name} is not installed: the hwnas command needs the service extra "
        "(pip install 'hwnas[service]'); on a device, run the agent: hwnas-agent --help"
    ) from None

from cli.commands import datasets, finetune, jobs, listing, quickstart, science, service, targets
from cli.console import CLIError, adapt_to_output, err_console

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware NAS over once-for-all supernets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    callback=adapt_to_output,
)
for _module in (science, quickstart, service, jobs, finetune, listing, datasets, targets):
    _module.register(app)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, typer.TyperException) and hasattr(exc, "format_message"):
        text = exc.format_message()
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hwnas`` console script; returns the exit code."""
    from cli.client import ClientError

    try:
        code = app(args=list(argv) if argv is not None else sys.argv[1:], prog_name="hwnas", standalone_mode=False)
    except typer.Abort:
        return 130
    except (CLIError, ClientError, typer.TyperException, ValueError, KeyError, OSError) as exc:
        err_console.print(f"[red]error:[/] {escape(_one_line(exc))}", highlight=False)
        return 1
    return code if isinstance(code, int) else 0

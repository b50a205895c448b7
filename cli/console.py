"""What every command prints through: the consoles, rows, durations, and the user-error type."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)
PLAIN_WIDTH = 200
"""The width tables are laid out in when the output is a file or a pipe (rich would take 80)."""


def adapt_to_output() -> None:
    """Make output to a file or a pipe readable: lines are never wrapped, tables get `PLAIN_WIDTH` columns.

    Called before every command; a terminal keeps rich's own wrapping at its width.
    """
    for out in (console, err_console):
        if not out.is_terminal:
            out.soft_wrap = True
            out.width = PLAIN_WIDTH


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> None:
    """Rows under a header: a rich table on a terminal; on a file or a pipe, plain lines with aligned columns."""
    if console.is_terminal:
        from rich.table import Table

        table = Table(*columns, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max(len(line[i]) for line in (columns, *rows)) for i in range(len(columns))]
    for line in (columns, *rows):
        console.print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), markup=False,
                      highlight=False)  # fmt: skip


def duration(seconds: float) -> str:
    """A duration, short: ``4.2s``, ``3m 05s``, ``2h 07m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


class CLIError(Exception):
    """An error the user can fix; printed as one line, exit code 1."""

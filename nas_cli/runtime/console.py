"""Rich console output: progress bars and result tables."""

from __future__ import annotations

import sys
from typing import Any, Iterable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def error_line(message: str) -> None:
    """One-line user error on stderr (no traceback)."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=True,
        disable=not sys.stdout.isatty(),
    )


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def kv_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    for k, v in rows:
        table.add_row(k, fmt(v))
    return table

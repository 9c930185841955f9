"""The progress bar of long commands (bench, experiment run): on stderr, only on a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(*, quiet: bool = False, transient: bool = False) -> Progress:
    """Description, bar, done/total, elapsed and ETA; stdout stays free for the command's output.

    quiet (or stderr not a terminal) disables it; transient erases it when it stops.
    """
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=quiet or not console.is_terminal,
    )

"""One progress-bar helper for training, export, build and bench (rich, on stderr)."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_console = Console(stderr=True)
ENABLED = True  # the CLI turns bars off for --json / --quiet runs


@contextlib.contextmanager
def bar(description: str, total: int) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **metrics)``; metrics show after the bar (``loss=0.123``)."""
    if not ENABLED:
        yield lambda n=1, **metrics: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}")]
    with Progress(*columns, console=_console, transient=False) as progress:
        task = progress.add_task(description, total=total, metrics="")

        def advance(n: int = 1, **metrics: float) -> None:
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            progress.update(task, advance=n, metrics=text)

        yield advance

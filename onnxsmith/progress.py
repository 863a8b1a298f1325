"""Progress on stderr for long verbs: phase lines and a bar per pass over the data.

Silent unless enabled (library calls stay quiet; the CLI turns it on), and on stderr so stdout
keeps only results.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Reporter:
    """Prints `· phase` lines with elapsed time and shows bars over feeds."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False)
        self.start = time.perf_counter()

    def phase(self, text: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            self.console.print(f"[dim]{elapsed:6.1f}s[/dim] · {text}")

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Callable[[], None]]:
        """A context whose value is called once per feed."""
        if not self.enabled:
            yield lambda: None
            return
        columns = (
            TextColumn("        · {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(description, total=total)
            yield lambda: progress.advance(task)

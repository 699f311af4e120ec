"""Progress bars on stderr (rich), or nothing at all when disabled (API default, tests, pipes)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress


class Progress:
    """A thin wrapper so build code can report progress without caring whether it is shown."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._rich: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def task(self, description: str, total: int | None, unit: str) -> Any:
        """Start a bar; returns a handle for `advance`."""
        return self._rich.add_task(description, total=total, unit=unit) if self._rich else None

    def advance(self, task: Any, amount: int = 1) -> None:
        if self._rich is not None and task is not None:
            self._rich.advance(task, amount)

    def note(self, message: str) -> None:
        """A one-line status message."""
        if self._rich is not None:
            self._rich.console.print(f"[dim]{message}[/dim]")

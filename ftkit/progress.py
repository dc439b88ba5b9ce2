"""What a run prints: a Rich progress bar (step/total, loss, LR, samples/s, ETA) and notes.

Everything goes to stderr so stdout stays clean for tables and JSON; only the main process
prints, and --quiet silences all but errors.
"""

from __future__ import annotations

from typing import Any


class Reporter:
    """Progress and notes for one run; a no-op when quiet or not the main process."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.main_process = True
        self._progress: Any = None
        self._task: Any = None
        self._pending: list[str] | None = []  # notes wait for the run to start: a refusal stays one line

    @property
    def active(self) -> bool:
        return not self.quiet and self.main_process

    def note(self, message: str) -> None:
        if self._pending is not None:
            self._pending.append(message)
        elif self.active:
            self.console.print(f"[dim]note:[/dim] {message}", highlight=False, soft_wrap=True)

    def start(self, total_steps: int, title: str) -> None:
        pending, self._pending = self._pending or [], None
        for message in pending:
            self.note(message)
        if not self.active:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console.print(title, highlight=False)
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} samples/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total_steps, loss="-", lr="-", speed="-")

    def update(self, step: int, loss: float | None = None, lr: float | None = None, speed: float | None = None) -> None:
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields = {"loss": f"{loss:.4f}", "lr": f"{lr:.2e}", "speed": f"{speed:.1f}"}
            if not self.console.is_terminal:  # no live bar in a log file: one line per logging step
                total = self._progress.tasks[0].total
                self.console.print(f"step {step}/{total} loss {fields['loss']} lr {fields['lr']} {fields['speed']} samples/s", highlight=False)
        self._progress.update(self._task, completed=step, **fields)

    def eval_line(self, step: int, epoch: float, metric: str, value: float | None, loss: float | None) -> None:
        if not self.active:
            return
        shown = "n/a" if value is None else f"{value:.4f}"
        extra = f", loss {loss:.4f}" if loss is not None else ""
        self.console.print(f"eval step {step} (epoch {epoch:.2f}): {metric} {shown}{extra}", highlight=False)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

"""What a run prints: a Rich progress bar (step/total, loss, LR, samples/s, ETA), a bar per
evaluation or prediction pass, and notes.

Everything goes to stderr so stdout stays clean for tables and JSON; only the main process
prints, and --quiet silences all but errors. Where stderr is no terminal (a log file, CI) no bar
is drawn: sparse plain lines say the same.
"""

from __future__ import annotations

import time
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
        self._total = 0
        self._logged = self._previewed = False  # the bar has shown a logged loss / a running one
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
        self.console.print(title, highlight=False, soft_wrap=True)  # one line in a log, not cut at 80 columns
        self._progress = self.new_progress(total_known=True, redirect_stdout=True)
        self._progress.start()
        self._total = total_steps
        self._task = self._progress.add_task("train", total=total_steps, info="loss - lr - - samples/s")

    @property
    def wants_loss(self) -> bool:
        """Whether the bar still waits for its first loss (the loop then passes a running mean);
        without a terminal, only the first step's line is worth the wait for the device."""
        return self._progress is not None and not self._logged and (self.console.is_terminal or not self._previewed)

    def update(self, step: int, loss: float | None = None, lr: float | None = None, speed: float | None = None, preview: bool = False) -> None:
        """Move the bar to `step`; with a loss (logged, or a `preview` before the first log) show it."""
        if self._progress is None:
            return
        fields = {}
        if loss is not None:
            fields = {"info": f"loss {loss:.4f} lr {lr:.2e} {speed:.1f} samples/s"}
            self._logged, self._previewed = self._logged or not preview, self._previewed or preview
            if not self.console.is_terminal:  # no live bar in a log file: one line per logging step
                self.console.print(f"step {step}/{self._total} {fields['info']}", highlight=False)
        self._progress.update(self._task, completed=step, **fields)

    def eval_line(self, step: int, epoch: float, metric: str, value: float | None, loss: float | None) -> None:
        if not self.active:
            return
        shown = "n/a" if value is None else f"{value:.4f}"
        extra = f", loss {loss:.4f}" if loss is not None else ""
        self.console.print(f"eval step {step} (epoch {epoch:.2f}): {metric} {shown}{extra}", highlight=False)

    def track(self, label: str, total: int | None, unit: str) -> Pass:
        """Progress of one evaluation or prediction pass (`total` None: not known ahead)."""
        return Pass(self, label, total, unit)

    def new_progress(self, total_known: bool, redirect_stdout: bool) -> Any:
        """A Rich Progress on stderr: done/total and ETA, or (total unknown) a count and its rate.

        redirect_stdout=False where stdout carries results (predict): Rich would move what is
        printed there to stderr while the bar shows."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        if total_known:
            columns = (MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
        else:
            columns = (TextColumn("{task.completed:,.0f} {task.fields[info]}"), TimeElapsedColumn())
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), *columns, console=self.console,
                        transient=False, redirect_stdout=redirect_stdout)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class Pass:
    """One pass over batches or rows: `advance(n)` as each is done; use it as a context manager.

    Under the training bar (validation), a second bar that goes when the pass ends; otherwise a
    bar of its own. Without a terminal, a plain line per tenth of the pass, at most one each
    PLAIN_EVERY_S seconds (every PLAIN_EVERY_S x 6 with no total), and one at the end."""

    PLAIN_EVERY_S = 10.0  # a log gets a sign of life, not a line per batch

    def __init__(self, reporter: Reporter, label: str, total: int | None, unit: str) -> None:
        self.reporter, self.label, self.total, self.unit = reporter, label, total, unit
        self.done = 0
        self._began = self._last_line = time.monotonic()
        self._last_tenth = 0
        self._progress: Any = None
        self._task: Any = None
        self._own = False  # a bar of its own (stopped at the end), or a task under the training bar

    def __enter__(self) -> Pass:
        reporter = self.reporter
        if reporter.active and reporter.console.is_terminal:
            self._own = reporter._progress is None
            self._progress = reporter.new_progress(self.total is not None, redirect_stdout=False) if self._own else reporter._progress
            if self._own:
                self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, info=self._info())
        self._began = self._last_line = time.monotonic()
        return self

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._task is not None:
            self._progress.update(self._task, completed=self.done, info=self._info())
        elif self.reporter.active and self._line_due():
            self._line()

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if self._task is not None:
            if self._own:
                self._progress.stop()
            else:  # the training bar goes on alone
                self._progress.remove_task(self._task)
        elif self.reporter.active and kind is None:
            self._line(final=True)

    def _rate(self) -> float:
        elapsed = time.monotonic() - self._began
        return self.done / elapsed if elapsed > 0 else 0.0

    def _info(self) -> str:
        return self.unit if self.total is not None else f"{self.unit}, {self._rate():.1f}/s"

    def _line_due(self) -> bool:
        now = time.monotonic()
        if self.total is None:
            return now - self._last_line >= self.PLAIN_EVERY_S * 6
        tenth = 10 * self.done // max(self.total, 1)
        return tenth > self._last_tenth and self.done < self.total and now - self._last_line >= self.PLAIN_EVERY_S

    def _line(self, final: bool = False) -> None:
        """`validation 2/3 batches, 0:00:04, ETA 0:00:02`; at the end `validation 3/3 batches in 0:00:06`."""
        elapsed, self._last_line = time.monotonic() - self._began, time.monotonic()
        if self.total is None:
            count, rate = f"{self.done:,} {self.unit}", f"{self._rate():.1f}/s"
            say = f"{count} in {_clock(elapsed)} ({rate})" if final else f"{count}, {rate}, {_clock(elapsed)}"
        else:
            self._last_tenth = 10 * self.done // max(self.total, 1)
            count = f"{self.done}/{self.total} {self.unit}"
            eta = _clock(elapsed * (self.total - self.done) / max(self.done, 1))
            say = f"{count} in {_clock(elapsed)}" if final else f"{count}, {_clock(elapsed)}, ETA {eta}"
        self.reporter.console.print(f"{self.label} {say}", highlight=False)


def _clock(seconds: float) -> str:
    """h:mm:ss, as the bar's elapsed and ETA columns."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"

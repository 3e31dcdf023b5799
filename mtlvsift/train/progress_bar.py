"""What a run shows while it trains (main process only).

In a terminal: a rich progress bar and a table per evaluation. Anywhere else (a log file, a
pipe, a SLURM output file): plain lines that are never wrapped nor redrawn, since rich would cut
them at 80 columns: the progress at each log point, each evaluation as a title line and one line
per task.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from mtlvsift.tasks import get_task


def stderr_is_terminal() -> bool:
    """Whether the run's display goes to a terminal (as rich decides it: FORCE_COLOR, TTY_COMPATIBLE)."""
    return Console(stderr=True).is_terminal


class TrainDisplay:
    def __init__(self, enabled: bool, title: str, total_steps: int, done_steps: int):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.live = enabled and self.console.is_terminal  # else plain lines
        self.title = title
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, disable=not self.live,
        )
        self.bar_id = self.bar.add_task(title, total=total_steps, completed=done_steps, status="")
        self.total_steps, self.steps, self.first_step = total_steps, done_steps, done_steps
        self.started = time.monotonic()

    def __enter__(self) -> "TrainDisplay":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def advance(self) -> None:
        self.bar.advance(self.bar_id)
        self.steps += 1

    def status(self, loss: float, examples_per_second: float, probabilities: dict[str, float]) -> None:
        # "p:" says these are the tasks' sampling probabilities of the epoch, not scores.
        mix = "p: " + " ".join(f"{get_task(t).display} {p:.2f}" for t, p in probabilities.items()) \
            if len(probabilities) > 1 else ""
        status = f"loss {loss:.4f}  {examples_per_second:,.0f} ex/s  {mix}"
        self.bar.update(self.bar_id, status=status)
        if self.enabled and not self.live:
            elapsed = time.monotonic() - self.started
            done = self.steps - self.first_step
            eta = _clock(elapsed / done * (self.total_steps - self.steps)) if done else "?"
            self._plain(f"{self.title}: step {self.steps:,}/{self.total_steps:,}  {status.rstrip()}  "
                        f"{_clock(elapsed)} elapsed, ETA {eta}")

    def message(self, text: str) -> None:
        if self.live:
            self.console.print(text, markup=False)  # paths and options may hold [brackets]
        elif self.enabled:
            self._plain(text)

    def evaluation(self, step: int, epoch: float, metrics: dict[str, dict[str, float]],
                   best_marker: set[str], baselines: dict[str, dict] | None = None) -> None:
        """The dev table: each task's main score (``*``: a new best), what a constant prediction
        scores (``baselines``: task -> {"score": ...}), and every metric."""
        if not self.enabled:
            return
        baselines = baselines or {}
        title = f"{self.title}: dev at step {step} (epoch {epoch:.2f})"
        rows = []
        for task_name, values in metrics.items():
            task = get_task(task_name)
            star = " *" if task_name in best_marker else ""
            baseline = baselines.get(task_name)
            rows.append((task.display, f"{100 * task.main_score(values):.2f}{star}",
                         "" if baseline is None else f"{100 * baseline['score']:.2f}",
                         "  ".join(f"{k} {100 * v:.2f}" for k, v in values.items())))
        if not self.live:
            self._plain(title)
            width, main_width = (max((len(row[i]) for row in rows), default=0) for i in (0, 1))
            for display, main, baseline, every in rows:
                self._plain(f"  {display:<{width}}  main {main:<{main_width}}  baseline {baseline or '-'}  "
                            f"{every}")
            if best_marker:
                self._plain("  * new best")
            return
        table = Table(title=title, title_justify="left",
                      caption="* new best" if best_marker else None, caption_justify="left")
        table.add_column("task")
        table.add_column("main", justify="right")
        table.add_column("baseline", justify="right")
        table.add_column("all metrics (points)")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)

    @staticmethod
    def _plain(line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    """0:01:05, as rich's elapsed column shows time."""
    return str(timedelta(seconds=int(seconds)))

"""What a run shows while it trains (main process only): a rich progress bar and metric tables."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from mtlvsift.tasks import get_task


class TrainDisplay:
    def __init__(self, enabled: bool, title: str, total_steps: int, done_steps: int):
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.title = title
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, disable=not enabled,
        )
        self.bar_id = self.bar.add_task(title, total=total_steps, completed=done_steps, status="")

    def __enter__(self) -> "TrainDisplay":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def advance(self) -> None:
        self.bar.advance(self.bar_id)

    def status(self, loss: float, examples_per_second: float, probabilities: dict[str, float]) -> None:
        # "p:" says these are the tasks' sampling probabilities of the epoch, not scores.
        mix = "p: " + " ".join(f"{get_task(t).display} {p:.2f}" for t, p in probabilities.items()) \
            if len(probabilities) > 1 else ""
        self.bar.update(self.bar_id, status=f"loss {loss:.4f}  {examples_per_second:,.0f} ex/s  {mix}")

    def message(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False)  # paths and options may hold [brackets]

    def evaluation(self, step: int, epoch: float, metrics: dict[str, dict[str, float]],
                   best_marker: set[str], baselines: dict[str, dict] | None = None) -> None:
        """The dev table: each task's main score (``*``: a new best), what a constant prediction
        scores (``baselines``: task -> {"score": ...}), and every metric."""
        if not self.enabled:
            return
        baselines = baselines or {}
        table = Table(title=f"{self.title}: dev at step {step} (epoch {epoch:.2f})", title_justify="left",
                      caption="* new best" if best_marker else None, caption_justify="left")
        table.add_column("task")
        table.add_column("main", justify="right")
        table.add_column("baseline", justify="right")
        table.add_column("all metrics (points)")
        for task_name, values in metrics.items():
            task = get_task(task_name)
            star = " *" if task_name in best_marker else ""
            baseline = baselines.get(task_name)
            table.add_row(task.display, f"{100 * task.main_score(values):.2f}{star}",
                          "" if baseline is None else f"{100 * baseline['score']:.2f}",
                          "  ".join(f"{k} {100 * v:.2f}" for k, v in values.items()))
        self.console.print(table)

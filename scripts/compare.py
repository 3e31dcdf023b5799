#!/usr/bin/env python
"""Compare pairwise MTL, STILTs and MTL_All from run records (Weller et al., 2022).

    python scripts/compare.py                      # report outputs/, files in outputs/report/
    python scripts/compare.py --outputs runs --welch --model distilroberta-base
    python scripts/compare.py recommend --target rte --support mnli
    python scripts/compare.py recommend --target-size 2000 --support-size 50000
"""

from __future__ import annotations

from pathlib import Path

import click

from mtlvsift.params import FiniteFloatRange
from mtlvsift.report.compare import compare, recommend

FOLDER = click.Path(path_type=Path, file_okay=False)


def shared_options(default):
    """--outputs, --model, --alpha, --welch; ``default`` None lets a subcommand inherit them."""
    def decorate(f):
        for option in reversed([
            click.option("--outputs", type=FOLDER, default=default and "outputs",
                         show_default=bool(default), help="Root folder of the runs."),
            click.option("--model", default=None,
                         help="Report only this model (default: each model found, separately)."),
            click.option("--alpha", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
                         default=default and 0.1, show_default=bool(default),
                         help="Significance level of the per-cell t-tests."),
            click.option("--welch", is_flag=True, default=None if not default else False,
                         help="Welch's t-test instead of Student's equal-variance one (the "
                              "paper's)."),
        ]):
            f = option(f)
        return f
    return decorate


@click.group(invoke_without_command=True)
@shared_options(default=True)
@click.option("--report-dir", type=FOLDER, default=None,
              help="Where report.md, figures, CSVs and summary.json go [default: OUTPUTS/report].")
@click.pass_context
def main(ctx: click.Context, outputs: Path, model: str | None, alpha: float, welch: bool,
         report_dir: Path | None) -> None:
    """Significance-tested MTL vs STILTs report: Figure 1, the size heuristic, Tables 1-2,
    Figure 2, missing runs and runs in progress."""
    ctx.obj = {"outputs": outputs, "model": model, "alpha": alpha, "welch": welch}
    if ctx.invoked_subcommand is None:
        compare(outputs, report_dir, alpha=alpha, welch=welch, model=model)


@main.command("recommend")
@click.option("--target", help="Target task name (its size is read from the runs or GLUE).")
@click.option("--support", help="Supporting task name.")
@click.option("--target-size", type=click.IntRange(min=1), help="Target training examples.")
@click.option("--support-size", type=click.IntRange(min=1), help="Supporting training examples.")
@shared_options(default=None)
@click.pass_context
def recommend_command(ctx: click.Context, target: str | None, support: str | None,
                      target_size: int | None, support_size: int | None, outputs: Path | None,
                      model: str | None, alpha: float | None, welch: bool | None) -> None:
    """Which method the size heuristic picks for a new pair, and how often it held.

    Which supporting task to use at all (LogME, every candidate): scripts/recommend.py."""
    shared = ctx.obj
    recommend(outputs or shared["outputs"], target, support, target_size, support_size,
              model=model or shared["model"], alpha=alpha or shared["alpha"],
              welch=shared["welch"] if welch is None else welch)


if __name__ == "__main__":
    main()

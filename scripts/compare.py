#!/usr/bin/env python
"""Compare pairwise MTL, STILTs and MTL_All from run records (Weller et al., 2022).

    python scripts/compare.py                      # report outputs/, files in outputs/report/
    python scripts/compare.py --outputs runs --test welch --correction holm --model distilroberta-base
    python scripts/compare.py recommend --target rte --support mnli
    python scripts/compare.py recommend --target-size 2000 --support-size 50000
    python scripts/compare.py curves --target rte   # dev score and loss against step, per seed
"""

from __future__ import annotations

from pathlib import Path

import click

from mtlvsift.params import FiniteFloatRange
from mtlvsift.report.inference import CORRECTIONS, TESTS
from mtlvsift.report.verdicts import DEFAULT_MARGIN

FOLDER = click.Path(path_type=Path, file_okay=False)


def report_dir_option(what: str):
    """--report-dir (default None: OUTPUTS/report, or a subcommand inherits the group's)."""
    return click.option("--report-dir", type=FOLDER, default=None,
                        help=f"{what} [default: OUTPUTS/report].")


def shared_options(default, statistics=True):
    """--outputs, --model and (``statistics``) --alpha, --test (--welch), --correction,
    --equivalence-margin; ``default`` None lets a subcommand inherit them."""
    def decorate(f):
        where = [
            click.option("--outputs", type=FOLDER, default=default and "outputs",
                         show_default=bool(default), help="Root folder of the runs."),
            click.option("--model", default=None,
                         help="Report only this model (default: each model found, separately)."),
        ]
        for option in reversed(where + ([] if not statistics else [
            click.option("--alpha", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
                         default=default and 0.1, show_default=bool(default),
                         help="Significance level of the per-cell t-tests."),
            click.option("--test", type=click.Choice(TESTS), default=default and "student",
                         show_default=bool(default),
                         help="The per-cell t-test: Student's equal-variance one (the paper's) "
                              "or Welch's."),
            click.option("--welch", is_flag=True, default=None if not default else False,
                         help="The same as --test welch."),
            click.option("--correction", type=click.Choice(CORRECTIONS),
                         default=default and "none", show_default=bool(default),
                         help="Correction of the p values over the cells of one report: none "
                              "(the paper's), Holm-Bonferroni or Benjamini-Hochberg."),
            click.option("--equivalence-margin", type=FiniteFloatRange(0, min_open=True),
                         default=default and DEFAULT_MARGIN, show_default=bool(default),
                         help="Points: a cell that is not significant but whose TOST at this "
                              "margin passes is 'equivalent'."),
        ])):
            f = option(f)
        return f
    return decorate


@click.group(invoke_without_command=True)
@shared_options(default=True)
@report_dir_option("Where report.md, figures, CSVs and summary.json go")
@click.option("--aso", is_flag=True,
              help="Add almost stochastic order (Dror et al. 2019) per cell, a few seconds "
                   "each; needs pip install 'mtlvsift[aso]' (deepsig, GPL-3.0).")
@click.pass_context
def main(ctx: click.Context, outputs: Path, model: str | None, alpha: float, test: str,
         welch: bool, correction: str, equivalence_margin: float,
         report_dir: Path | None, aso: bool) -> None:
    """Significance-tested MTL vs STILTs report: Figure 1, the size heuristic, Tables 1-2,
    Figure 2, missing runs and runs in progress."""
    ctx.obj = {"outputs": outputs, "model": model, "alpha": alpha,
               "welch": welch or test == "welch", "correction": correction,
               "margin": equivalence_margin, "report_dir": report_dir}
    if ctx.invoked_subcommand is None:
        from mtlvsift.report.compare import compare  # the statistics: not for --help

        compare(outputs, report_dir, alpha=alpha, welch=ctx.obj["welch"], model=model,
                correction=correction, margin=equivalence_margin, aso=aso)


@main.command("recommend")
@click.option("--target", help="Target task name (its size is read from the runs or GLUE).")
@click.option("--support", help="Supporting task name.")
@click.option("--target-size", type=click.IntRange(min=1), help="Target training examples.")
@click.option("--support-size", type=click.IntRange(min=1), help="Supporting training examples.")
@shared_options(default=None)
@click.pass_context
def recommend_command(ctx: click.Context, target: str | None, support: str | None,
                      target_size: int | None, support_size: int | None, outputs: Path | None,
                      model: str | None, alpha: float | None, test: str | None,
                      welch: bool | None, correction: str | None,
                      equivalence_margin: float | None) -> None:
    """Which method the size heuristic picks for a new pair, and how often it held.

    Which supporting task to use at all (LogME, every candidate): scripts/recommend.py."""
    from mtlvsift.report.compare import recommend

    shared = ctx.obj
    welch = welch or (shared["welch"] if test is None else test == "welch")
    recommend(outputs or shared["outputs"], target, support, target_size, support_size,
              model=model or shared["model"], alpha=alpha or shared["alpha"], welch=welch,
              correction=correction or shared["correction"],
              margin=equivalence_margin or shared["margin"])


@main.command("curves")
@click.option("--target", "targets", multiple=True,
              help="Draw this target only (repeatable; default: every target trained).")
@shared_options(default=None, statistics=False)
@report_dir_option("The report folder: the PNGs go to its curves/ (to each report's own "
                   "subfolder's when there are several)")
@click.pass_context
def curves_command(ctx: click.Context, targets: tuple[str, ...], outputs: Path | None,
                   model: str | None, report_dir: Path | None) -> None:
    """Training curves: each run's dev score and training loss against the step, one line per
    seed, a colour per configuration; one PNG per target in REPORT_DIR/curves/."""
    from mtlvsift.report.curves import write_curves

    shared = ctx.obj
    write_curves(outputs or shared["outputs"], report_dir or shared["report_dir"],
                 model or shared["model"], targets)


if __name__ == "__main__":
    main()

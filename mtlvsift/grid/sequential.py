"""``run_grid.py --until-decided --max-seeds M``: after the grid's seeds, more seeds only for
the cells (target, support) whose verdict is open and that more seeds could decide.

The cells are judged by the report itself: ``report.stats.analyze`` over the records found under
the outputs (what compare.py reads), with the report's defaults (Student's t-test, alpha 0.1, no
correction, the TOST margin). A cell qualifies when

- its verdict is ``open`` and it has fewer than M seeds per method (the fewer of MTL's and
  STILTs'), and
- its observed |MTL - STILTs| is at least its minimum detectable effect with M seeds per method
  (``inference.minimum_detectable_effect`` of its pooled sd at 80% power): a difference smaller
  than that would stay open even at M, so seeds spent on it are wasted.

Degenerate cells have no p value and no usable sd (``inference.degenerate_reason``):

- fewer than 3 seeds a side: it cannot be tested at all, so it qualifies until it has 3 (or M,
  when M is smaller), and is judged by the rule above from then on;
- no variance on either side (every seed the same score): the MDE is 0, so it qualifies, one
  seed at a time, while its two means differ (only more seeds can show a spread to test), and not
  when they are equal (a model stuck at one prediction: more of the same decides nothing).

Seeds come in rounds. In a round a qualifying cell gets the seeds its power analysis asks for:
up to the smallest n <= M whose MDE is at most its observed difference (3 for a cell that cannot
be tested yet), then every cell is judged again. Jumping to that n rather than adding one seed per
round means fewer looks at the data, and each look is a chance for optional stopping to declare
a difference that is not there (docs/compare.md); and it needs fewer rounds of training.

New seeds are the next seed numbers above the grid's own; both methods of the cell are trained
with them (STILTs target <- support, and the pairwise MTL run, whose record also fills the
symmetric cell). They keep ``--support-seeds`` = the grid's seeds, so every seed of a cell starts
from the same STILTs model and reads the same single-task scores (the report pools only such
seeds); the single runs they read are the grid's, already trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from rich.console import Console

from mtlvsift.display import safe_markup
from mtlvsift.errors import MtlvsiftError
from mtlvsift.grid.estimate import measured_speeds, run_seconds, run_work
from mtlvsift.grid.plan import GridRun, grid_runs
from mtlvsift.grid.run import GridOutcome, is_main_process, run_here, run_jobs
from mtlvsift.report import inference
from mtlvsift.report.stats import POINTS, Analysis, Cell, analyze
from mtlvsift.report.variants import ReportKey, report_keys, report_records, split_variant
from mtlvsift.run_index import discover
from mtlvsift.run_record import RunRecord
from mtlvsift.run_options import ADDED_UNTIL_DECIDED

PAIRWISE_METHODS = ("stilts", "mtl")


@dataclass(frozen=True)
class CellNeed:
    """What --until-decided makes of one cell: how many seeds per method it has, and wants."""

    target: str
    support: str
    seeds: int  # seeds per method now: the fewer of MTL's and STILTs'
    wanted: int  # seeds per method after this round (``seeds``: it gets none)
    diff: float | None  # MTL minus STILTs, points
    mde: float | None  # minimum detectable effect at --max-seeds per method, points
    verdict: str | None
    reason: str  # why it gets seeds, or why not

    @property
    def qualifies(self) -> bool:
        return self.wanted > self.seeds


def assess_cells(analysis: Analysis, max_seeds: int, alpha: float | None = None,
                 tasks: list[str] | None = None) -> list[CellNeed]:
    """Every cell of ``analysis`` (among ``tasks`` when given), judged by the module's rule at
    ``max_seeds`` per method; ``alpha`` defaults to the analysis's."""
    alpha = analysis.alpha if alpha is None else alpha
    chosen = set(tasks) if tasks is not None else None
    return [_assess(cell, max_seeds, alpha) for key, cell in sorted(analysis.cells.items())
            if chosen is None or set(key) <= chosen]


def cells_needing_seeds(analysis: Analysis, max_seeds: int, alpha: float | None = None,
                        tasks: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(target, support, reason) of the cells that qualify for more seeds."""
    return [(n.target, n.support, n.reason) for n in assess_cells(analysis, max_seeds, alpha, tasks)
            if n.qualifies]


def _assess(cell: Cell, max_seeds: int, alpha: float) -> CellNeed:
    def need(wanted: int, reason: str, mde: float | None = None) -> CellNeed:
        return CellNeed(cell.target, cell.support, seeds, max(wanted, seeds), cell.diff, mde,
                        cell.verdict, reason)

    if not cell.complete:
        seeds = 0
        return need(0, cell.refused or "lacks the runs of a method (the grid's own seeds train them)")
    mtl, stilts = _points(cell.mtl.scores), _points(cell.stilts.scores)
    seeds = min(len(mtl), len(stilts))
    if cell.verdict != "open":
        return need(0, "no more seeds needed")
    if seeds >= max_seeds:
        return need(0, f"--max-seeds {max_seeds} reached")
    if seeds < inference.MIN_SEEDS:
        wanted = min(inference.MIN_SEEDS, max_seeds)
        return need(wanted, f"fewer than {inference.MIN_SEEDS} seeds: cannot be tested yet")
    sd = inference.pooled_sd(mtl, stilts)
    if sd == 0:
        if cell.diff == 0:
            return need(0, "no variance and equal means: more of the same decides nothing", 0.0)
        return need(seeds + 1, "no variance, means differ: one more seed to see a spread", 0.0)
    mde = inference.minimum_detectable_effect(sd, max_seeds, max_seeds, alpha)
    if abs(cell.diff) < mde:
        return need(0, f"|diff| {abs(cell.diff):.2f} < MDE {mde:.2f} at {max_seeds} seeds: "
                       f"more seeds would not decide it", mde)
    wanted = _seeds_to_detect(sd, abs(cell.diff), seeds + 1, max_seeds, alpha)
    return need(wanted, f"|diff| {abs(cell.diff):.2f} >= MDE {mde:.2f} at {max_seeds} seeds: "
                        f"{wanted} seeds could decide it", mde)


def _seeds_to_detect(sd: float, diff: float, low: int, high: int, alpha: float) -> int:
    """The fewest seeds per method in [low, high] whose MDE is at most ``diff`` (the MDE falls
    as the seeds grow; ``high``'s is known to be small enough): a bisection."""
    while low < high:
        middle = (low + high) // 2
        if inference.minimum_detectable_effect(sd, middle, middle, alpha) <= diff:
            high = middle
        else:
            low = middle + 1
    return low


def _points(scores: list[float]) -> list[float]:
    return [s * POINTS for s in scores]


def next_seeds(cell: Cell, wanted: int, above: int) -> list[int]:
    """The seeds to train for ``cell`` to have ``wanted`` seeds per method: the smallest seed
    numbers above ``above`` (the grid's largest seed) that its two methods do not both have."""
    mtl, stilts = set(cell.mtl.seeds), set(cell.stilts.seeds)
    new: list[int] = []
    for seed in count(above + 1):
        if min(len(mtl | set(new)), len(stilts | set(new))) >= wanted:
            return new
        if not (seed in mtl and seed in stilts):
            new.append(seed)
    raise AssertionError("unreachable")


def report_key(runs: list[GridRun], records: list[RunRecord] = ()) -> ReportKey:
    """The report the grid's pairwise runs belong to: the one whose records include them (its
    settings may differ from the tree's main report's), else (model, protocol, data variant)."""
    config = next(r.config for r in runs if r.method in PAIRWISE_METHODS)
    # The grid's MTL runs decide first: each MTL configuration has its own report (variants.py).
    for methods in (("mtl",), PAIRWISE_METHODS):
        folders = {r.run_dir for r in runs if r.method in methods}
        for key in report_keys(records):
            if any(str(record.folder) in folders for record in report_records(records, key)):
                return key
    return ReportKey(config.model, config.protocol, split_variant(config.variant)[0])


def grid_analysis(outputs: Path, runs: list[GridRun]) -> Analysis:
    """The report's analysis of the grid's cells, from the records under ``outputs`` now."""
    records = discover(outputs).records
    key = report_key(runs, records)
    return analyze(records, key.model, protocol=key.protocol, variant=key.variant, settings=key.settings,
                   mtl=key.mtl)


def round_runs(analysis: Analysis, needs: list[CellNeed], base_seeds: list[int],
               options: dict[str, Any], mtl_sampling: str
               ) -> tuple[dict[tuple[str, str], list[int]], list[GridRun]]:
    """The seeds each qualifying cell gets this round, and the runs that train them (the
    single runs they read first, each run once: the MTL run of a pair serves both its cells)."""
    seeds = {(n.target, n.support): next_seeds(analysis.cells[n.target, n.support], n.wanted,
                                               max(base_seeds))
             for n in needs if n.qualifies}
    runs: dict[str, GridRun] = {}
    added = {**options, ADDED_UNTIL_DECIDED: True}  # in the record: the report flags the cell
    for (target, support), new in seeds.items():
        for run in grid_runs([target, support], new, list(PAIRWISE_METHODS), added, mtl_sampling,
                             support_seeds=base_seeds):
            if run.method != "stilts" or run.config.target == target:
                runs.setdefault(run.run_dir, run)
    ordered = sorted(runs.values(), key=lambda r: (r.stage, r.method != "single"))
    return seeds, ordered


def check_until_decided(until_decided: bool, max_seeds: int | None, seeds: list[int],
                        methods: list[str], emit_kind: str | None, support_ratios: str | None,
                        overwrite: bool) -> None:
    """The options --until-decided needs, and those it cannot go with: one line each."""
    if not until_decided:
        if max_seeds is not None:
            raise MtlvsiftError("--max-seeds goes with --until-decided (the most seeds per method "
                                "a cell may get).")
        return
    if max_seeds is None:
        raise MtlvsiftError("--until-decided needs --max-seeds M: the most seeds per method a cell "
                            "may get, more than the grid's --seeds.")
    if max_seeds <= len(seeds):
        raise MtlvsiftError(f"--max-seeds {max_seeds} must be more than the {len(seeds)} --seeds "
                            f"of the grid (the seeds every cell gets anyway).")
    if emit_kind:
        raise MtlvsiftError("--until-decided cannot go with --emit: it chooses the seeds from the "
                            "results, which emitted scripts have not made yet. Run the emitted "
                            "grid, then run_grid.py --until-decided (finished runs are skipped).")
    if not set(PAIRWISE_METHODS) <= set(methods):
        raise MtlvsiftError("--until-decided needs --methods with both stilts and mtl: it adds "
                            "seeds to the cells that compare them.")
    if support_ratios:
        raise MtlvsiftError("--until-decided works on the cells of the MTL vs STILTs matrix, not "
                            "on the size experiment: leave out --support-ratios.")
    if overwrite:
        raise MtlvsiftError("--until-decided cannot go with --overwrite: retrain the grid with "
                            "--overwrite first, then run --until-decided without it.")


def run_until_decided(runs: list[GridRun], base_seeds: list[int], options: dict[str, Any],
                      mtl_sampling: str, max_seeds: int, jobs: int, repo_root: Path,
                      console: Console, outcome: GridOutcome, dry_run: bool) -> GridOutcome:
    """Rounds of seeds for the cells that qualify, until none does, each round's runs added to
    ``outcome``; the seeds each cell used, said at the end (``dry_run``: the first round's
    cells, nothing trained)."""
    outputs, key, main = Path(options["output_dir"]), report_key(runs), is_main_process()
    tasks = sorted({t for r in runs if r.method in PAIRWISE_METHODS for t in r.config.tasks})
    mode = "process" if jobs > 1 else "in-process"
    speeds = measured_speeds(outputs, key.model, int(os.environ.get("WORLD_SIZE", "1")))
    for round_number in count(1):
        analysis = grid_analysis(outputs, runs)
        needs = assess_cells(analysis, max_seeds, tasks=tasks)
        seeds, planned = round_runs(analysis, needs, base_seeds, options, mtl_sampling)
        if dry_run:
            if main and any(r.status() != "complete" for r in runs):
                console.print("--until-decided (dry run): the grid's own runs are not all trained: "
                              "the cells below are judged from the records there now, and are "
                              "judged again once those runs are trained.", highlight=False)
            if main:
                show_needs(needs, seeds, max_seeds, console, None)
                console.print(f"--until-decided (dry run): {len(seeds)} cell(s) would get seeds in "
                              f"the first round; later rounds depend on their results. Nothing "
                              f"trained or written.")
            return outcome
        todo = [r for r in planned if r.status() != "complete"]
        if main and seeds:
            show_needs(needs, seeds, max_seeds, console, round_number)
        if not seeds or not todo:
            if seeds and main:  # the report does not count runs that are there (see its warnings)
                console.print("[yellow]--until-decided:[/] the runs of the cells that qualify are "
                              "complete but the report does not count them (see compare.py's "
                              "warnings); stopped.")
            break
        estimates = {r.run_dir: run_seconds(run_work(r.config), speeds, mode) for r in todo}
        done = (run_jobs(todo, [], outputs, jobs, repo_root, console) if jobs > 1
                else run_here(todo, [], outputs, estimates, console))
        outcome.trained += done.trained
        outcome.failed += done.failed
        outcome.busy += done.busy
        if done.failed or done.busy:
            break
    if main:
        show_seeds_per_cell(grid_analysis(outputs, runs), tasks, base_seeds, max_seeds, console)
    return outcome


def show_needs(needs: list[CellNeed], seeds: dict[tuple[str, str], list[int]], max_seeds: int,
               console: Console, round_number: int | None) -> None:
    """One line per cell, unwrapped: its seeds per method, difference, MDE at --max-seeds,
    verdict, and the seeds it gets (or why none); ``round_number`` None: a dry run's."""
    when, gets = (f"round {round_number}", "gets") if round_number else ("dry run", "would get")
    console.print(f"--until-decided ({when}): cells that more seeds could decide (at most "
                  f"{max_seeds} per method); diff MTL - STILTs and MDE in points:"
                  + ("" if needs else " none: no cell of the grid has records yet."), highlight=False)
    for need in needs:
        new = seeds.get((need.target, need.support))
        line = (f"  {need.target} <- {need.support}: {need.seeds} seeds, diff "
                f"{_number(need.diff, '+.2f')}, MDE at {max_seeds} {_number(need.mde, '.2f')}, "
                f"{need.verdict or 'incomplete'}: "
                + (f"{gets} seed(s) {', '.join(map(str, new))}" if new else "no seeds")
                + f" ({need.reason})")
        console.print(safe_markup(line), highlight=False, soft_wrap=True)


def show_seeds_per_cell(analysis: Analysis, tasks: list[str], base_seeds: list[int],
                        max_seeds: int, console: Console) -> None:
    """The final word: how many seeds each cell used, and its verdict with them."""
    lines = []
    for need in assess_cells(analysis, max_seeds, tasks=tasks):
        cell = analysis.cells[need.target, need.support]
        added = sorted({s for g in (cell.mtl, cell.stilts) if g for s in g.seeds} - set(base_seeds))
        lines.append(f"  {need.target} <- {need.support}: {cell.mtl.n if cell.mtl else 0} MTL, "
                     f"{cell.stilts.n if cell.stilts else 0} STILTs seeds"
                     f"{f' (added {added})' if added else ''}; {need.verdict or 'incomplete'}: "
                     f"{need.reason}")
    console.print(f"--until-decided: seeds per cell ({len(base_seeds)} from the grid, at most "
                  f"{max_seeds}):" + ("" if lines else " no cell of the grid has records yet."),
                  highlight=False)
    for line in lines:
        console.print(safe_markup(line), highlight=False, soft_wrap=True)


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)

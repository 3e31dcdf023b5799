"""``scripts/run_grid.py``: the grid's options, its plan shown (``--dry-run``), written out
(``--emit``) or run."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtlvsift.display import safe_markup
from mtlvsift.errors import MtlvsiftError
from mtlvsift.grid import emit, sequential
from mtlvsift.grid.estimate import Speeds, describe_bytes, describe_seconds, measured_speeds, \
    run_seconds, run_work
from mtlvsift.grid.plan import GridRun, grid_runs, parse_list
from mtlvsift.run_folder import atomic_write_json
from mtlvsift.grid.run import GridOutcome, calibrate, is_main_process, run_here, run_jobs

def ratios_of(value: str) -> list[float]:
    """--support-ratios: distinct finite numbers above 0 (the paper: 0.333,0.5,1,2,3)."""
    try:
        ratios = [float(r) for r in parse_list(value, "support-ratios")]
    except ValueError:
        raise MtlvsiftError(f"--support-ratios {value!r} is not a list of numbers such as "
                            f"0.333,0.5,1,2,3.") from None
    if not all(math.isfinite(r) and 0 < r <= 1000 for r in ratios):
        raise MtlvsiftError(f"--support-ratios {value!r}: each ratio is a number above 0 and at "
                            f"most 1000.")
    return ratios


def check_layout(emit_kind: str | None, jobs: int, runs_per_gpu: int | None, **slurm: int) -> None:
    """The options of how runs share machines: SLURM's only with --emit slurm, --runs-per-gpu
    only with --jobs on GPUs."""
    given = [f"--{name.replace('_', '-')}" for name, value in slurm.items() if value != SLURM_DEFAULTS[name]]
    if given and emit_kind != "slurm":
        raise MtlvsiftError(f"{', '.join(given)} go(es) with --emit slurm (how the array jobs hold "
                            f"the runs).")
    if slurm.get("gpus_per_node") == 0 and slurm.get("nodes", 1) > 1:
        raise MtlvsiftError("--nodes N trains each run on N machines' GPUs: give --gpus-per-node too.")
    if runs_per_gpu is not None and (emit_kind or jobs < 2):
        raise MtlvsiftError("--runs-per-gpu R goes with --jobs N (N runs at once, R of them on each "
                            "GPU), not with --emit.")


SLURM_DEFAULTS = {"signal_lead": emit.DEFAULT_SIGNAL_LEAD, "runs_per_task": 1, "nodes": 1, "gpus_per_node": 0}


def check_slurm_text(emit_kind: str | None, emit_to: str | None, sbatch: tuple[str, ...]) -> None:
    """What goes on an ``#SBATCH`` line verbatim: one printable line, no shell quoting there."""
    for line in sbatch:
        if not line.startswith("-") or not line.isprintable() or not line.strip():
            raise MtlvsiftError(f"--sbatch {line!r}: give one sbatch option per --sbatch, such as "
                                f"'--gres=gpu:1' or '--time=04:00:00' (one printable line).")
    if sbatch and emit_kind != "slurm":
        raise MtlvsiftError("--sbatch goes with --emit slurm.")
    problem = emit.slurm_path_problem(emit_to) if emit_kind == "slurm" and emit_to else None
    if problem:
        raise MtlvsiftError(problem)


def run_grid(tasks: str, seeds: tuple[int, ...], methods: str, mtl_sampling: str, mtl_all_sampling: str,
             dry_run: bool, jobs: int, emit_kind: str | None,
             emit_to: str | None, sbatch: tuple[str, ...], repo_root: Path,
             plan_json: str | None = None, support_ratios: str | None = None,
             target_fraction: float | None = None, until_decided: bool = False,
             max_seeds: int | None = None, runs_per_gpu: int | None = None,
             signal_lead: int = emit.DEFAULT_SIGNAL_LEAD, runs_per_task: int = 1, nodes: int = 1,
             gpus_per_node: int = 0, **options: Any) -> GridOutcome | None:
    """What scripts/run_grid.py does with its options (``options``: the run options it passes on,
    ``cli.grid_options``); ``until_decided``: then seeds for the open cells (grid/sequential.py);
    ``runs_per_gpu``: how many --jobs share a GPU; the SLURM layout's (``emit.SlurmLayout``)."""
    console = Console(highlight=False)
    if emit_kind and not emit_to:
        raise MtlvsiftError("--emit needs --emit-to DIR: the folder to write the scripts into.")
    check_slurm_text(emit_kind, emit_to, sbatch)
    check_layout(emit_kind, jobs, runs_per_gpu, signal_lead=signal_lead, runs_per_task=runs_per_task,
                 nodes=nodes, gpus_per_node=gpus_per_node)
    method_names = parse_list(methods, "methods")
    sequential.check_until_decided(until_decided, max_seeds, list(seeds), method_names, emit_kind,
                                   support_ratios, bool(options.get("overwrite")))
    runs = grid_runs(parse_list(tasks, "tasks"), list(seeds), method_names,
                     options, mtl_sampling, mtl_all_sampling,
                     ratios_of(support_ratios) if support_ratios else [], target_fraction)

    def then_until_decided(outcome: GridOutcome | None) -> GridOutcome | None:
        """--until-decided's rounds after the grid's own runs (dry: the first round's cells)."""
        if until_decided:
            sequential.run_until_decided(runs, list(seeds), options, mtl_sampling, max_seeds, jobs,
                                         repo_root, console, outcome or GridOutcome(), dry_run)
            if outcome is not None and outcome.failed:
                raise SystemExit(1)
        return outcome

    outputs = Path(options["output_dir"])
    main = is_main_process()
    if emit_kind:
        if main:
            layout = emit.SlurmLayout((Path(emit_to) / "logs").resolve(), tuple(sbatch), signal_lead,
                                      runs_per_task, nodes, gpus_per_node)
            write_emitted(runs, emit_kind, Path(emit_to), repo_root, layout, console)
        return None
    mode = "process" if jobs > 1 else "in-process"
    statuses = {r.run_dir: r.status_with_reason() for r in runs}
    todo, skipped, stale = split_by_status(runs, statuses, bool(options.get("overwrite")),
                                           bool(options.get("retrain_stale")))
    if not todo:
        if main:
            kept = f" ({len(stale)} of them stale, kept as they are: --retrain-stale trains them again)" if stale else ""
            console.print(f"All {len(runs)} runs of the grid are complete under {outputs}{kept}" + (
                "; --until-decided looks at their cells." if until_decided else
                f": nothing to do. (compare.py --outputs {outputs} reports them.)"))
            show_stale_and_recheck(runs, statuses, console)
        return then_until_decided(None if dry_run else GridOutcome(skipped=skipped, stale=stale))
    speeds = measured_speeds(outputs, runs[0].config.model, int(os.environ.get("WORLD_SIZE", "1")))
    unmeasured = sorted({t for r in todo for t in r.config.tasks} - set(speeds.tasks))
    if dry_run and unmeasured:  # every process: under accelerate launch the probe runs use DDP
        measured = calibrate(todo[0].config, unmeasured, console)
        speeds.tasks.update(measured.tasks)
        speeds.overhead.setdefault("in-process", measured.overhead["in-process"])
        speeds.run_bytes = speeds.run_bytes or measured.run_bytes
    # A run to look at again is most likely kept: the ETA counts it only if --retrain-stale.
    estimates = {r.run_dir: run_seconds(run_work(r.config), speeds, mode) for r in todo
                 if statuses[r.run_dir][0] != "recheck" or r.config.retrain_stale}
    if main:
        show_plan(runs, statuses, estimates, speeds, mode, jobs, outputs, console, dry_run, runs_per_gpu)
        if plan_json:
            atomic_write_json(plan_json, plan_document(runs, statuses, estimates, speeds, mode, jobs))
    if dry_run:
        return then_until_decided(None)
    recheck = frozenset(r.run_dir for r in todo if statuses[r.run_dir][0] == "recheck")
    if jobs > 1:
        outcome = run_jobs(todo, skipped, outputs, jobs, repo_root, console, recheck, runs_per_gpu)
    else:
        outcome = run_here(todo, skipped, outputs, estimates, console, recheck)
    outcome.stale = stale + outcome.stale
    if main:
        show_outcome(outcome, outputs, console)
    if outcome.failed:
        raise SystemExit(1)
    return then_until_decided(outcome)


def split_by_status(runs: list[GridRun], statuses: dict[str, tuple[str, str]], overwrite: bool,
                    retrain_stale: bool) -> tuple[list[GridRun], list[GridRun], list[tuple[GridRun, str]]]:
    """(to run, complete, stale and kept with the reason): --overwrite trains every run again;
    otherwise complete runs are skipped, and stale ones kept unless --retrain-stale. A run to
    look at again (``recheck``) is run: it trains only if what it reads has changed."""
    if overwrite:
        return list(runs), [], []
    todo = [r for r in runs if statuses[r.run_dir][0] not in ("complete", "stale")
            or (statuses[r.run_dir][0] == "stale" and retrain_stale)]
    skipped = [r for r in runs if statuses[r.run_dir][0] == "complete"]
    stale = [(r, statuses[r.run_dir][1]) for r in runs if r not in todo and statuses[r.run_dir][0] == "stale"]
    return todo, skipped, stale


def show_plan(runs: list[GridRun], statuses: dict[str, tuple[str, str]], estimates: dict[str, float | None],
              speeds: Speeds, mode: str, jobs: int, outputs: Path, console: Console, dry_run: bool,
              runs_per_gpu: int | None = None) -> None:
    """The runs that are not complete (complete ones counted in the title), their estimates,
    why a run is stale or looked at again, the commands (dry run), the ETA and disk."""
    todo = [r for r in runs if r.run_dir in estimates]
    complete = sum(statuses[r.run_dir][0] == "complete" for r in runs)
    table = Table(title=f"Grid plan: {len(runs)} runs, {len(todo)} to train, {complete} complete "
                        f"(not listed) ({'dry run: nothing trained or written' if dry_run else mode})")
    for column in ("#", "stage", "run", "status", "steps", "estimate"):
        table.add_column(column, justify="right" if column in ("#", "steps", "estimate") else "left")
    for number, run in enumerate(runs, 1):
        known = run.run_dir in estimates
        if statuses[run.run_dir][0] == "complete" and not known:
            continue
        table.add_row(str(number), str(run.stage), run.label + (" (added)" if run.added else ""),
                      statuses[run.run_dir][0], f"{run_work(run.config).steps:,}" if known else "",
                      describe_seconds(estimates[run.run_dir]) if known else "")
    console.print(table)
    show_stale_and_recheck(runs, statuses, console)
    clashing = [r for r in runs if statuses[r.run_dir][0] in ("changed", "damaged")]
    if clashing:
        console.print(f"{len(clashing)} run folder(s) hold a run with other options, or a damaged "
                      f"config.json (status changed/damaged; e.g. {clashing[0].run_dir}): those "
                      f"runs stop with an error unless --overwrite replaces them; or choose another "
                      f"--output-dir.")
    if dry_run:  # one line each, unwrapped, to copy
        console.print("Commands (in this order; finished runs left out):")
        for number, run in enumerate(runs, 1):
            if run.run_dir in estimates:
                console.print(f"  {number:>3}  {run.command()}", soft_wrap=True, markup=False)
    total = [estimates[r.run_dir] for r in todo]
    eta = None if None in total else sum(total) / max(1, min(jobs, len(todo)))
    sources = sorted({f"{t} ({s.source})" for t, s in speeds.tasks.items()})
    sharing = f", {runs_per_gpu} per GPU (each run's speed measured alone)" if runs_per_gpu else ""
    console.print(f"ETA: {describe_seconds(eta)} for {len(todo)} runs ({mode}"
                  f"{f', {jobs} at once' if jobs > 1 else ''}{sharing}); speeds measured by: "
                  f"{', '.join(sources) or 'nothing yet'}; {describe_seconds(speeds.overhead_for(mode))} "
                  f"of set-up per run.")
    if speeds.run_bytes is not None:
        console.print(f"Disk: about {describe_bytes(speeds.run_bytes * len(todo))} for {len(todo)} "
                      f"run folders ({describe_bytes(speeds.run_bytes)} each, mostly best/), plus a "
                      f"run's state/ while it trains (removed when it ends).")


def show_stale_and_recheck(runs: list[GridRun], statuses: dict[str, tuple[str, str]], console: Console) -> None:
    """One line per stale run and per run looked at again after stage 1: why, and what happens."""
    for number, run in enumerate(runs, 1):
        status, reason = statuses[run.run_dir]
        if status in ("stale", "recheck"):
            what = ("trained again (--retrain-stale)" if run.config.retrain_stale else
                    "kept as it is (--retrain-stale trains it again)") if status == "stale" else \
                "looked at again after stage 1"
            console.print(f"  {number:>3}  {status}: {run.label}: {safe_markup(reason)}; {what}.",
                          highlight=False)


def plan_document(runs: list[GridRun], statuses: dict[str, tuple[str, str]],
                  estimates: dict[str, float | None], speeds: Speeds, mode: str, jobs: int) -> dict[str, Any]:
    """--plan-json: every run with its command, status (and why, where stale or looked at again)
    and estimate; the ETA in seconds."""
    todo = [estimates[r.run_dir] for r in runs if r.run_dir in estimates]
    return {"runs": [{"label": r.label, "method": r.method, "stage": r.stage, "run_dir": r.run_dir,
                      "status": statuses[r.run_dir][0], "status_reason": statuses[r.run_dir][1] or None,
                      "command": r.command(),
                      "estimate_seconds": estimates.get(r.run_dir)} for r in runs],
            "mode": mode, "jobs": jobs,
            "eta_seconds": None if None in todo else sum(todo) / max(1, min(jobs, len(todo))),
            "speeds": {t: vars(s) for t, s in speeds.tasks.items()},
            "overhead_seconds": speeds.overhead_for(mode), "run_bytes": speeds.run_bytes}


def show_outcome(outcome: GridOutcome, outputs: Path, console: Console) -> None:
    busy = f", {len(outcome.busy)} in use by another process" if outcome.busy else ""
    stale = (f", {len(outcome.stale)} stale (kept as they are; --retrain-stale trains them again)"
             if outcome.stale else "")
    console.print(f"Grid: {len(outcome.trained)} trained, {len(outcome.skipped)} already complete, "
                  f"{len(outcome.failed)} failed{busy}{stale}.")
    for run, why in outcome.failed:
        console.print(f"  [red]failed[/] {run.label}: {safe_markup(why.splitlines()[0])}")
    for run, pid in outcome.busy:
        console.print(f"  in use {run.label}: by process {pid}")
    if not outcome.failed:
        console.print(f"Report: python scripts/compare.py --outputs {safe_markup(str(outputs))}")


def write_emitted(runs: list[GridRun], kind: str, folder: Path, repo_root: Path,
                  layout: emit.SlurmLayout, console: Console) -> None:
    if kind == "shell":
        files = {"grid.sh": emit.shell_script(runs, repo_root)}
    else:
        layout.log_dir.mkdir(parents=True, exist_ok=True)
        files = emit.slurm_scripts(runs, repo_root, layout)
    for path in emit.write_files(folder, files):
        console.print(f"wrote {path}")
    stages = {s: sum(r.stage == s for r in runs) for s in sorted({r.stage for r in runs})}
    shares = [f"stage {s}: {n}" + ("" if kind == "shell" else f" in {layout.array_tasks(n)} array tasks")
              for s, n in stages.items()]
    console.print(f"{len(runs)} runs ({', '.join(shares)}); nothing trained. "
                  + ("Run: bash " + str(folder / "grid.sh") if kind == "shell"
                     else "Submit: bash " + str(folder / "submit.sh")))

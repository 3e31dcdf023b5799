"""The reduced reproduction of Weller et al. (2022) as one command, sized to a time budget.

A grid of the six GLUE tasks that are complete offline (RTE, MRPC, STS-B, CoLA, WNLI, SST-2)
with 3 seeds, single + STILTs + pairwise MTL + MTL_All (``scripts/run_grid.py``), then
``scripts/compare.py``. The grid is sized from this machine's measured speed: the grid's own
calibration (``mtlvsift.grid.run.calibrate``: a short single run per task) gives examples/s and
seconds per evaluation, the grid's own estimate (``run_work``/``run_seconds``) prices each
candidate size, and the largest candidate that fits the budget is run. Every task keeps the same
seeded fraction of its training rows (SST-2 capped at 10,000 first), so sizes keep their order.
Preference: all six tasks down to the device's smallest fraction (0.1 on a GPU, 0.01 on a CPU),
the largest fraction and most epochs (3, 2, 1) that fit; then fewer tasks (dropped from the end
of the list above); then smaller fractions. What
was cut from the paper's set-up (9 tasks, 5 seeds, 10 epochs, full data) is printed and written
to ``reproduction.md`` and ``reproduction.json``. A grid still running at the budget's end is
stopped (its finished runs are reported). Output folder: ``runs/`` (run records, best models),
``report/`` (compare.py's), ``reproduction.md``, ``figure1.png``, ``records.tar.gz`` (the run
records without model weights), ``reproduction.json``.

Run from the repository root as a module (the GPU image runs from the checkout). On a CPU:
    python -m bench.reproduce --device cpu --budget-minutes 10 --out outputs/reproduction-cpu
On the GPU machine (no datasets/evaluate, no MiniLM package): first, here,
    ../shared/tools/gpu-bundle.sh        # .gpu-bundle/: wheels, glue/ (all seven tasks), minilm/
then, with carry [".gpu-bundle"], this one command (bench.gpu_train first, then the reproduction):
    site=$(mktemp -d); python3 -m pip install -q --no-index --no-deps --target "$site" .gpu-bundle/wheels/*.whl && export PYTHONPATH="$site" && PYTHONUNBUFFERED=1 python3 -m bench.gpu_train --device cuda --out $OUT/gpu_train.json > $OUT/gpu_train.log 2>&1; PYTHONUNBUFFERED=1 python3 -m bench.reproduce --device cuda --budget-minutes 8 --out $OUT/reproduction 2>&1 | tee $OUT/reproduce.log
(two device calls if the 10-minute limit of one bites: the gpu_train part, then the reproduction.)
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import click

from bench import fixtures, report
from bench.reproduction_data import SST2_CAP, reproduction_glue

TASKS = ("rte", "mrpc", "stsb", "cola", "wnli", "sst2")  # cut from the end when tasks are cut
SEEDS = (0, 1, 2)
METHODS = "single,stilts,mtl,mtl_all"
PAPER_SETUP = {"tasks": 9, "seeds": 5, "epochs": 10}
# Every task keeps the same seeded fraction of its training rows, so that the sizes keep their
# order (the size heuristic compares them; one cap for all would make every cell a tie).
FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01)
EPOCHS = (3, 2, 1)
# Of the time left: grids took 1.8x to 2x their estimate on a shared CPU (small runs' set-up).
ESTIMATE_SHARE = 0.5


@dataclass(frozen=True)
class Scale:
    """A device's batch, length, dev rows, smallest fraction worth keeping all tasks for."""
    batch_size: int
    max_seq_length: int
    max_dev_rows: int | None  # None: whole dev sets
    floor: float
    report_seconds: float  # compare.py and the files after the grid (33 s measured on a busy CPU)


SCALES = {"cuda": Scale(32, 128, None, 0.1, 45.0), "cpu": Scale(16, 64, 64, 0.01, 60.0)}


@dataclass(frozen=True)
class Cut:
    tasks: tuple[str, ...]
    fraction: float  # of each task's training rows (SST-2's capped first)
    epochs: int


def candidates(tasks: tuple[str, ...], floor: float) -> list[Cut]:
    """Grid sizes from the largest down, in the order of preference (see the module's doc)."""
    counts = range(len(tasks), 1, -1)
    big = [Cut(tasks[:n], f, epochs) for n in counts for f in FRACTIONS if f >= floor for epochs in EPOCHS]
    small = [Cut(tasks[:n], f, epochs) for n in counts for f in FRACTIONS if f < floor for epochs in EPOCHS]
    return big + small


def grid_arguments(cut: Cut, scale: Scale, model: str, data_dir: Path, runs_dir: Path) -> list[str]:
    """run_grid.py's arguments for one grid size."""
    return ["--tasks", ",".join(cut.tasks), "--seeds", ",".join(map(str, SEEDS)), "--methods", METHODS,
            "--model", model, "--data-dir", str(data_dir), "--output-dir", str(runs_dir),
            "--epochs", str(cut.epochs),
            "--batch-size", str(scale.batch_size), "--max-seq-length", str(scale.max_seq_length)]


@lru_cache(maxsize=1)
def grid_script() -> click.Command:
    """scripts/run_grid.py's click command (its options and their defaults)."""
    return runpy.run_path(str(fixtures.REPO_ROOT / "scripts" / "run_grid.py"))["main"]


def planned_runs(arguments: list[str]):
    """The grid's runs for run_grid.py's ``arguments``, planned by the grid itself."""
    from mtlvsift import run_options
    from mtlvsift.grid.plan import grid_runs, parse_list

    params = grid_script().make_context("run_grid.py", list(arguments)).params
    options = {k: v for k, v in params.items() if k in run_options.names() and k != "target_fraction"}
    return grid_runs(parse_list(params["tasks"], "tasks"), list(params["seeds"]),
                     parse_list(params["methods"], "methods"), options, params["mtl_sampling"],
                     params["mtl_all_sampling"])


def estimated_seconds(runs, speeds) -> float:
    from mtlvsift.grid.estimate import run_seconds, run_work

    return sum(run_seconds(run_work(r.config), speeds, "in-process") for r in runs)


def choose(cuts: list[Cut], price, seconds: float) -> tuple[Cut, float, bool]:
    """The first cut whose estimate (``price(cut)``) fits in ``seconds``, else the smallest (the
    grid is stopped at the budget anyway: it then reports the runs that finished); and whether
    it fits."""
    for cut in cuts:
        estimate = price(cut)
        if estimate <= seconds:
            return cut, estimate, True
    return cuts[-1], estimate, False


def default_model() -> str:
    """DistilRoBERTa (the paper's family) where its weights are cached, else the GPU bundle's
    MiniLM, else the MiniLM package (``--model minilm``)."""
    from huggingface_hub import try_to_load_from_cache

    from mtlvsift.train.model.pretrained import hub_id

    hub = hub_id("distilroberta-base")
    if any(isinstance(try_to_load_from_cache(hub, f), str) for f in ("model.safetensors", "pytorch_model.bin")):
        return "distilroberta-base"
    bundled = fixtures.REPO_ROOT / ".gpu-bundle" / "minilm"
    return str(bundled) if (bundled / "config.json").is_file() else "minilm"


def fp32_model(model: str, dest: Path) -> str:
    """``model``, or an fp32 copy in ``dest`` of a folder of half-precision weights (the bundle's
    MiniLM): transformers loads weights in their dtype; mixed precision wants fp32 masters."""
    if not (Path(model) / "config.json").is_file():
        return model
    import torch
    from transformers import AutoModel, AutoTokenizer

    encoder = AutoModel.from_pretrained(model)
    if next(encoder.parameters()).dtype == torch.float32:
        return model
    encoder.to(torch.float32).save_pretrained(dest)
    AutoTokenizer.from_pretrained(model).save_pretrained(dest)
    return str(dest)


def checkout_env() -> dict[str, str]:
    """The environment of a script of scripts/ run from this checkout (mtlvsift need not be
    installed: the GPU image runs from the checkout)."""
    path = [str(fixtures.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}


def run_grid_until(arguments: list[str], deadline: float, log: Path) -> dict[str, Any]:
    """run_grid.py in its own process, stopped by SIGTERM (the grid stops at a checkpoint and
    keeps its finished runs) if it is still running at ``deadline`` (time.monotonic())."""
    start = time.monotonic()
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, str(fixtures.REPO_ROOT / "scripts" / "run_grid.py"),
                                    *arguments], stdout=handle, stderr=subprocess.STDOUT, env=checkout_env(),
                                   cwd=fixtures.REPO_ROOT)
        try:
            code, stopped = process.wait(timeout=max(1.0, deadline - start)), False
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            code, stopped = process.wait(), True
    return {"exit_code": code, "stopped_at_budget": stopped, "seconds": time.monotonic() - start}


def run_compare(runs_dir: Path, report_dir: Path, log: Path) -> Path:
    """compare.py over the runs; the folder of the report that holds the cells (its summary.json)."""
    from mtlvsift.errors import MtlvsiftError

    with open(log, "w") as handle:
        done = subprocess.run([sys.executable, str(fixtures.REPO_ROOT / "scripts" / "compare.py"),
                               "--outputs", str(runs_dir), "--report-dir", str(report_dir)],
                              stdout=handle, stderr=subprocess.STDOUT, env=checkout_env(), cwd=fixtures.REPO_ROOT)
    found = [p for p in report_dir.rglob("summary.json") if "cells" in json.loads(p.read_text())]
    if done.returncode != 0 or not found:
        raise MtlvsiftError(f"compare.py found nothing to report (exit {done.returncode}); see {log}.")
    return max(found, key=lambda p: len(json.loads(p.read_text())["cells"])).parent


def pack_records(runs_dir: Path, tarball: Path) -> int:
    """The run records (every file but the models, best/ and MTL's best-<task>/, and accelerate
    state) as a tarball."""
    count = 0
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(runs_dir.rglob("*")):
            parts = path.relative_to(runs_dir).parts
            if path.is_file() and not any(p == "state" or p.startswith("best") for p in parts):
                tar.add(path, arcname=str(Path("runs") / path.relative_to(runs_dir)))
                count += 1
    return count


def reproduction_markdown(record: dict[str, Any], summary: dict[str, Any], report_link: str) -> str:
    """reproduction.md: what ran and what was cut, the heuristic under each correction beside
    the paper's, Figure 1 and Table 1."""
    from mtlvsift.report.inference import CONFIDENCE

    cut, paper = record["cut"], summary["heuristic"]["paper"]
    head = ["correction", "cells predicted", "accuracy", f"{CONFIDENCE:.0%} Wilson CI", "paper (Weller et al. 2022)"]
    rows = []
    for name, score in summary["heuristic_by_correction"].items():
        ci = score.get("wilson_ci")
        rows.append([name, f"{score['correct']}/{score['total']}",
                     "—" if score["accuracy"] is None else f"{100 * score['accuracy']:.1f}%",
                     "—" if not ci else f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%",
                     f"{paper['correct']}/{paper['total']} = {100 * paper['accuracy']:.1f}%" if name == "none" else ""])
    table = summary["tables"].get("table1") or next(iter(summary["tables"].values()))
    t1 = report.markdown(["method", *table["columns"]],
                         [[r["label"], *("—" if v is None else f"{v:.1f}" for v in r["values"])] for r in table["rows"]],
                         left=1)
    grid = record["grid"]
    ending = ("stopped at the budget (its finished runs are reported)" if grid["stopped_at_budget"]
              else f"exit {grid['exit_code']}")
    cuts = [["tasks", str(PAPER_SETUP["tasks"]) + " (GLUE)", ", ".join(cut["tasks"])],
            ["seeds", str(PAPER_SETUP["seeds"]), ", ".join(map(str, SEEDS))],
            ["epochs", str(PAPER_SETUP["epochs"]), str(cut["epochs"])],
            ["training rows per task", "all (SST-2 67,349)",
             f"{cut['fraction']:g} of each, seeded (SST-2 capped at {SST2_CAP:,} first): "
             + ", ".join(f"{t} {n:,}" for t, n in record["train_rows"].items())],
            ["dev rows per task", "all", "all" if record["scale"]["max_dev_rows"] is None
             else f"first {record['scale']['max_dev_rows']}"],
            ["batch size, max length", "128, 128",
             f"{record['scale']['batch_size']}, {record['scale']['max_seq_length']}"],
            ["encoder", "DistilRoBERTa-base", record["model"]]]
    return "\n".join([
        "# Reduced reproduction of Weller et al. (2022)", "",
        f"`{record['command']}` on {record['machine']}, {record['date']}: budget "
        f"{record['budget_minutes']:g} min, wall time {record['wall_seconds'] / 60:.1f} min "
        f"(calibration {record['calibration_seconds']:.0f} s, grid {grid['seconds']:.0f} s against "
        f"an estimate of {record['estimate_seconds']:.0f} s, {ending}; report {record['report_seconds']:.0f} s). "
        f"Full report: [{report_link}]({report_link}); run records: `records.tar.gz`.", "",
        "## What was cut", "", report.markdown(["", "paper", "here"], cuts, left=3), "",
        (f"Chosen as the largest size whose estimate fit {100 * ESTIMATE_SHARE:.0f}% of the time the "
         f"budget left after the calibration and the report's reserve ({record['grid_seconds_allowed']:.0f} s)."
         if record["estimate_fits"] else
         f"Even the smallest size was estimated over the {record['grid_seconds_allowed']:.0f} s allowed: "
         f"it ran anyway, to be stopped at the budget's end if still running."), "",
        "## The size heuristic", "",
        f"Rule: {summary['heuristic']['rule']}. Cells whose MTL-vs-STILTs difference is significant "
        f"(alpha {summary['alpha']}) under each correction, and how many of them the heuristic predicted:", "",
        report.markdown(head, rows, left=1), "",
        "## Figure 1: pairwise MTL minus STILTs", "", "![Figure 1](figure1.png)", "",
        f"## {table['title']}", "", t1, ""])


def command_line(ctx: click.Context) -> str:
    """The command as given (the options the user set), whatever ``sys.argv`` holds."""
    from click.core import ParameterSource

    given = [p for p in ctx.command.params if ctx.get_parameter_source(p.name) != ParameterSource.DEFAULT]
    return " ".join(["python -m bench.reproduce", *(f"{p.opts[0]} {ctx.params[p.name]}" for p in given)])


@click.command(context_settings={"show_default": True})
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda")
@click.option("--budget-minutes", type=click.FloatRange(0.5, 24 * 60), default=8.0,
              help="Wall time of the whole command: calibration, grid, report.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=fixtures.REPO_ROOT / "outputs" / "reproduction")
@click.option("--model", default=None,
              help="Encoder  [default: distilroberta-base if cached, else .gpu-bundle/minilm, else minilm]")
@click.option("--tasks", default=",".join(TASKS), help="Tasks, kept in this order when cut.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GLUE folder  [default: ../shared/glue, else .gpu-bundle/glue]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: 32 on cuda, 16 on cpu]")
@click.option("--max-seq-length", type=click.IntRange(min=8), default=None, help="[default: 128 on cuda, 64 on cpu]")
@click.option("--max-dev-rows", type=click.IntRange(min=1), default=None, help="[default: all on cuda, 64 on cpu]")
def main(device, budget_minutes, out, model, tasks, data_dir, batch_size, max_seq_length, max_dev_rows):
    began = time.monotonic()
    fixtures.offline_environment()
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the grid's processes too
    import torch

    from mtlvsift.errors import MtlvsiftError
    from mtlvsift.grid.run import calibrate
    from mtlvsift.tasks import get_tasks

    if device == "cuda" and not torch.cuda.is_available():
        raise click.UsageError("--device cuda, but torch sees no GPU (use --device cpu here).")
    deadline = began + 60 * budget_minutes
    base = SCALES[device]
    scale = Scale(batch_size or base.batch_size, max_seq_length or base.max_seq_length,
                  max_dev_rows or base.max_dev_rows, base.floor, base.report_seconds)
    task_names = tuple(t.name for t in get_tasks([t.strip() for t in tasks.split(",") if t.strip()]))
    if len(task_names) < 2:
        raise click.UsageError("--tasks: give at least two tasks (STILTs and MTL need a pair).")
    model = model or default_model()
    source = data_dir or fixtures.default_data_dir(needs=get_tasks(task_names)[0].folder)
    if source is None:
        raise click.UsageError("No GLUE folder: pass --data-dir (../shared/glue or .gpu-bundle/glue).")
    if out.exists() and any(out.iterdir()) and not (out / "grid.log").is_file():
        raise click.UsageError(f"--out {out} holds other files: give a new folder (or a reproduction's).")
    shutil.rmtree(out, ignore_errors=True)  # a reproduction is one fresh grid: its budget sizes it
    out.mkdir(parents=True)
    glue = out / "glue"
    write_glue = lambda cut: reproduction_glue(Path(source), glue, cut.tasks, cut.fraction,  # noqa: E731
                                               scale.max_dev_rows)
    named, model = model, fp32_model(model, out / "model-fp32")
    runs_dir = out / "runs"
    cuts = candidates(task_names, scale.floor)
    arguments = lambda cut: grid_arguments(cut, scale, model, glue, runs_dir)  # noqa: E731
    console = report.console()
    calibrated = time.monotonic()
    write_glue(cuts[0])
    runs = planned_runs(arguments(cuts[0]))
    speeds = calibrate(runs[0].config, list(task_names), console)
    calibration_seconds = time.monotonic() - calibrated

    def price(cut: Cut) -> float:
        write_glue(cut)  # the grid's estimate counts the rows of the files it will read
        return estimated_seconds(planned_runs(arguments(cut)), speeds)

    allowed = ESTIMATE_SHARE * (deadline - time.monotonic() - scale.report_seconds)
    cut, estimate, fits = choose(cuts, price, allowed)
    train_rows = write_glue(cut)
    grid_args = arguments(cut)
    if not fits:
        console.print(f"[yellow]Even the smallest grid is estimated at {estimate:.0f} s, over the "
                      f"{allowed:.0f} s allowed: it runs until the budget and reports what finished "
                      f"(a larger --budget-minutes runs it whole).[/yellow]")
    console.print("Speeds: " + ", ".join(f"{t} {s.train_examples_per_s:.0f} ex/s, {s.eval_seconds:.1f} s/eval"
                                          for t, s in speeds.tasks.items()), highlight=False)
    console.print(f"Cut to fit {allowed:.0f} s: {len(cut.tasks)} of {len(task_names)} tasks "
                  f"({', '.join(cut.tasks)}), {cut.fraction:g} of each task's training rows "
                  f"({', '.join(f'{t} {n:,}' for t, n in train_rows.items())}), {cut.epochs} epoch(s), "
                  f"{len(SEEDS)} seeds, batch {scale.batch_size}, length {scale.max_seq_length}, dev "
                  f"rows {scale.max_dev_rows or 'all'}; estimate "
                  f"{estimate:.0f} s.", highlight=False)
    console.print("Grid: python scripts/run_grid.py " + " ".join(grid_args), highlight=False, soft_wrap=True)
    grid = run_grid_until(grid_args, deadline - scale.report_seconds, out / "grid.log")
    if grid["exit_code"] != 0 and not grid["stopped_at_budget"]:
        console.print(f"[yellow]The grid exited with {grid['exit_code']} (see {out / 'grid.log'}); "
                      f"reporting the runs that finished.[/yellow]")
    reported = time.monotonic()
    folder = run_compare(runs_dir, out / "report", out / "compare.log")
    summary = json.loads((folder / "summary.json").read_text())
    if (folder / "figure1.png").is_file():
        shutil.copy(folder / "figure1.png", out / "figure1.png")
    records = pack_records(runs_dir, out / "records.tar.gz")
    meta = report.meta(command_line(click.get_current_context()))
    record = {**meta, "budget_minutes": budget_minutes, "model": named, "model_path": model, "device": device,
              "scale": asdict(scale), "cut": asdict(cut), "train_rows": train_rows, "grid_arguments": grid_args,
              "speeds": {t: asdict(s) for t, s in speeds.tasks.items()},
              "calibration_seconds": calibration_seconds, "grid_seconds_allowed": allowed,
              "estimate_seconds": estimate, "estimate_fits": fits, "grid": grid, "report_seconds": time.monotonic() - reported,
              "records_in_tarball": records, "heuristic_by_correction": summary["heuristic_by_correction"],
              "paper_heuristic": summary["heuristic"]["paper"]}
    record["wall_seconds"] = time.monotonic() - began
    (out / "reproduction.md").write_text(
        reproduction_markdown(record, summary, str(folder.relative_to(out) / "report.md")), encoding="utf-8")
    report.save_json(out / "reproduction.json", record)
    console.print(f"Wall time {record['wall_seconds']:.0f} s of {60 * budget_minutes:.0f}; "
                  f"{out / 'reproduction.md'}", highlight=False)
    if record["wall_seconds"] > 60 * budget_minutes:
        raise MtlvsiftError(f"The reproduction took {record['wall_seconds']:.0f} s, over its budget.")


if __name__ == "__main__":
    main()

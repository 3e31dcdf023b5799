"""Projected GPU-hours of the paper's whole experiment, and of a 5-seed shell loop for one pair,
from measured throughput (a bench.gpu_train JSON, or rates given on the command line).

    python -m bench.paper_cost --train-rate 2959 --eval-rate 4853          # issue 6's HF Trainer numbers
    python -m bench.paper_cost --from-json outputs/bench/gpu_train-cuda.json --family loop

The experiment (Weller et al. 2022; DESIGN.md), 9 GLUE tasks, 5 seeds, 10 epochs, 20 evaluations
per run (every half epoch), one GPU, runs back to back:
  single   45 runs  (9 tasks x 5)              trains and evaluates the task
  stilts  360 runs  (72 ordered pairs x 5)     the second stage only (the first is a single run)
  mtl     180 runs  (36 unordered pairs x 5)   one run reads both cells: trains sum of both sizes
                                               per epoch (an MTL epoch is sum n_i / B batches),
                                               evaluates both dev sets
  mtl_all   5 runs                             all nine tasks per epoch, all nine dev sets
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations, permutations
from pathlib import Path

import click

from bench import fixtures, report
from mtlvsift.tasks import GLUE_TASKS, get_task

EPOCHS, EVALUATIONS, SEEDS = 10, 20, 5
TRAIN_SIZES = {name: task.train_size for name, task in GLUE_TASKS.items()}
DEV_SIZES = {"cola": 1043, "sst2": 872, "mrpc": 408, "stsb": 1500, "qqp": 40430,
             "mnli": 9815 + 9832, "qnli": 5463, "rte": 277, "wnli": 71}  # MNLI: matched + mismatched
# Mean WordPiece tokens per training example (MiniLM tokenizer, truncated at 128), measured on
# ../shared/glue on 2026-11-25 (QNLI: its dev set). MNLI's and QQP's files are not available here.
MEAN_TOKENS: dict[str, float | None] = {"cola": 11.3, "sst2": 13.3, "mrpc": 53.2, "stsb": 27.8,
                                        "rte": 66.6, "wnli": 37.1, "qnli": 51.0, "mnli": None, "qqp": None}
UNMEASURED_LIKE = {"mnli": "qnli", "qqp": "qnli"}  # assumption: sentence pairs of QNLI's length class
# family -> (kind, compiled, Trainer settings, packed batches)
FAMILIES = {"loop": ("loop", False, None, True), "loop-compile": ("loop", True, None, True),
            "loop-padded": ("loop", False, None, False),
            "trainer-paper": ("trainer", False, "paper", False), "trainer-best": ("trainer", False, "best", False)}


@dataclass
class Rates:
    """Examples/s per measured task; a task without its own number takes the measured task of the
    nearest mean length ('*' = one rate for every task)."""

    train: dict[str, float]
    eval: dict[str, float]
    tokens: dict[str, float] = field(default_factory=dict)  # mean train tokens of the measured tasks
    mtl_factor: float = 1.0  # MTL speed / single-task speed of the same examples
    checkpoint_seconds: float = 0.0  # per evaluation
    source: str = ""

    def measured_like(self, task: str) -> str:
        if "*" in self.train:
            return "*"
        if task in self.train:
            return task
        length = MEAN_TOKENS.get(task)
        if length is None:
            like = UNMEASURED_LIKE.get(task, "qnli")
            return like if like in self.train else self.measured_like(like)
        return min(self.train, key=lambda t: abs(self.tokens.get(t, MEAN_TOKENS.get(t) or 0) - length))

    def train_rate(self, task: str) -> float:
        return self.train[self.measured_like(task)]

    def eval_rate(self, task: str) -> float:
        return self.eval[self.measured_like(task)]


@dataclass
class Run:
    method: str
    tasks: tuple[str, ...]
    count: int


def paper_runs() -> list[Run]:
    names = list(GLUE_TASKS)
    return ([Run("single", (t,), SEEDS) for t in names]
            + [Run("stilts", (target,), SEEDS) for target, _support in permutations(names, 2)]
            + [Run("mtl", pair, SEEDS) for pair in combinations(names, 2)]
            + [Run("mtl_all", tuple(names), SEEDS)])


def pair_loop_runs(target: str, support: str) -> list[Run]:
    """The README's shell loop over 5 seeds: both single tasks, STILTs and MTL for one pair."""
    return [Run("single", (target,), SEEDS), Run("single", (support,), SEEDS),
            Run("stilts", (target,), SEEDS), Run("mtl", (target, support), SEEDS)]


def run_cost(run: Run, rates: Rates) -> dict[str, float]:
    """One run's examples and seconds: training, evaluation, checkpoints."""
    train_examples = EPOCHS * sum(TRAIN_SIZES[t] for t in run.tasks)
    eval_examples = EVALUATIONS * sum(DEV_SIZES[t] for t in run.tasks)
    train_s = EPOCHS * sum(TRAIN_SIZES[t] / rates.train_rate(t) for t in run.tasks)
    if len(run.tasks) > 1:
        train_s /= rates.mtl_factor
    eval_s = EVALUATIONS * sum(DEV_SIZES[t] / rates.eval_rate(t) for t in run.tasks)
    return {"train_examples": train_examples, "eval_examples": eval_examples, "train_s": train_s,
            "eval_s": eval_s, "checkpoint_s": EVALUATIONS * rates.checkpoint_seconds}


def project(runs: list[Run], rates: Rates) -> dict[str, dict[str, float]]:
    """Totals per method, then overall (key 'total'); hours in *_h."""
    keys = list(dict.fromkeys(run.method for run in runs)) + ["total"]
    totals = {key: {"runs": 0, "train_examples": 0, "eval_examples": 0, "train_s": 0.0,
                    "eval_s": 0.0, "checkpoint_s": 0.0} for key in keys}
    for run in runs:
        cost = run_cost(run, rates)
        for key in (run.method, "total"):
            totals[key]["runs"] += run.count
            for name, value in cost.items():
                totals[key][name] += run.count * value
    for row in totals.values():
        for name in ("train", "eval", "checkpoint"):
            row[f"{name}_h"] = row[f"{name}_s"] / 3600
        row["total_h"] = row["train_h"] + row["eval_h"] + row["checkpoint_h"]
    return totals


def rates_from_json(path: Path, family: str) -> Rates:
    data = json.loads(path.read_text())
    kind, compiled, trainer, packed = FAMILIES[family]

    def member(case: dict) -> bool:  # (results from before packing have no "packing": padded)
        return (case.get("kind") == kind and bool(case.get("compile")) == compiled
                and bool(case.get("packing")) == packed and not case.get("varlen_attention"))

    train, evals, tokens = {}, {}, {}
    for case in data["cases"]:
        if ("error" in case or not member(case) or len(case["tasks"]) != 1 or not case["name"].startswith(
                f"trainer-{trainer}" if trainer else "loop")):
            continue
        task = case["tasks"][0]
        if case.get("train_examples_per_s") and case.get("eval_examples_per_s"):
            train[task], evals[task] = case["train_examples_per_s"], case["eval_examples_per_s"]
            tokens[task] = case["train_tokens_per_example"]
    if not train:
        raise click.UsageError(f"{path} has no single-task {family} measurement.")
    summary = data.get("summary", {})
    mtl = summary.get("mtl_vs_single_compile" if compiled else "mtl_vs_single") \
        if kind == "loop" and packed else None
    ckpt = [c["checkpoint_seconds_per_eval"] for c in data["cases"]
            if "error" not in c and member(c) and c.get("checkpoint_seconds_per_eval") is not None
            and len(c["tasks"]) == 1]
    source = f"{path} ({family}; {data['meta']['machine']}, {data['meta']['date']})"
    if trainer == "paper":  # padded to 128: every task costs the same per example
        only = next(iter(train))
        train, evals = {"*": train[only]}, {"*": evals[only]}
    return Rates(train, evals, tokens, mtl or 1.0, sum(ckpt) / len(ckpt) if ckpt else 0.0, source)


def assumptions(rates: Rates) -> list[str]:
    notes = [f"{EPOCHS} epochs, {EVALUATIONS} evaluations per run (every half epoch), {SEEDS} seeds; "
             "runs back to back on one GPU; start-up, tokenization and model loading not counted.",
             "Train sizes: mtlvsift.tasks.GLUE_TASKS; dev sizes: " + ", ".join(
                 f"{get_task(t).display} {n:,}" for t, n in DEV_SIZES.items()) + " (MNLI matched + mismatched).",
             "STILTs counts its second stage only: the first stage is the supporting task's single run.",
             "MTL: one run per unordered pair gives both cells; an epoch is the sum of both sizes; "
             f"MTL time = single-task time of the same examples / {rates.mtl_factor:.3f}"
             + (" (measured)." if rates.mtl_factor != 1.0 else " (assumed equal)."),
             f"Checkpoint + best model: the loop waits {rates.checkpoint_seconds:.2f} s per evaluation"
             + (" (measured; the write itself runs in the background)." if rates.checkpoint_seconds
                else " (not measured; left out)."),
             f"Rates from {rates.source}."]
    if "*" in rates.train:
        notes.append(f"One rate for every task: {rates.train['*']:,.0f} train / {rates.eval['*']:,.0f} "
                     "eval ex/s (exact for padding to 128, an approximation otherwise).")
    else:
        mapping = ", ".join(f"{get_task(t).display}->{get_task(rates.measured_like(t)).display}"
                            for t in GLUE_TASKS)
        notes.append(f"Each task takes the rate of the measured task of nearest mean length ({mapping}); "
                     "MNLI and QQP are assumed QNLI-like (no files here to measure).")
    return notes


COLUMNS = ("method", "runs", "train examples", "eval examples", "train h", "eval h", "checkpoint h",
           "total h")


def projection_rows(totals: dict[str, dict[str, float]]) -> list[list[str]]:
    return [[method, f"{row['runs']:,}", f"{row['train_examples']:,}", f"{row['eval_examples']:,}",
             f"{row['train_h']:.2f}", f"{row['eval_h']:.2f}", f"{row['checkpoint_h']:.2f}",
             f"{row['total_h']:.2f}"] for method, row in totals.items()]


def markdown_projection(totals: dict[str, dict[str, float]]) -> str:
    return report.markdown(list(COLUMNS), projection_rows(totals), left=1)


def print_projection(title: str, totals: dict[str, dict[str, float]]) -> None:
    table = report.rich_table(title, list(COLUMNS), [], left=1)
    for row in projection_rows(totals):
        table.add_row(*row, style="bold" if row[0] == "total" else None)
    report.console().print(table)


@click.command(context_settings={"show_default": True})
@click.option("--from-json", "json_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="A bench.gpu_train results file.")
@click.option("--family", type=click.Choice(list(FAMILIES)), default="loop",
              help="Which configuration of the JSON to project.")
@click.option("--train-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Training examples/s, one rate for every task (instead of --from-json).")
@click.option("--eval-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Evaluation examples/s, one rate for every task.")
@click.option("--checkpoint-seconds", type=click.FloatRange(min=0), default=None,
              help="Seconds per evaluation spent saving  [default: measured in the JSON, else 0]")
@click.option("--mtl-factor", type=click.FloatRange(min=0, min_open=True), default=None,
              help="MTL speed / single-task speed  [default: measured in the JSON, else 1]")
@click.option("--label", default="rates given on the command line", help="Where the rates come from.")
@click.option("--target", default="rte", help="The pair of the shell loop: target task.")
@click.option("--support", default="mnli", help="The pair of the shell loop: supporting task.")
@click.option("--markdown", is_flag=True, help="Print markdown tables (for bench/RESULTS.md).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(json_path, family, train_rate, eval_rate, checkpoint_seconds, mtl_factor, label, target,
         support, markdown, json_out):
    fixtures.offline_environment()  # as every benchmark script (this one loads no model)
    if json_path is not None:
        rates = rates_from_json(json_path, family)
    elif train_rate and eval_rate:
        rates = Rates({"*": train_rate}, {"*": eval_rate}, source=label)
    else:
        raise click.UsageError("Pass --from-json FILE, or both --train-rate and --eval-rate.")
    if checkpoint_seconds is not None:
        rates.checkpoint_seconds = checkpoint_seconds
    if mtl_factor is not None:
        rates.mtl_factor = mtl_factor
    target, support = get_task(target).name, get_task(support).name
    paper = project(paper_runs(), rates)
    pair = project(pair_loop_runs(target, support), rates)
    pair_title = f"Shell loop, 5 seeds: {get_task(target).display} with {get_task(support).display}"
    show = (lambda title, totals: print(f"{title}\n\n{markdown_projection(totals)}\n")) if markdown \
        else print_projection
    show("The paper's experiment on one GPU", paper)
    print(f"= {paper['total']['total_h']:.1f} GPU-hours = {paper['total']['total_h'] / 24:.2f} GPU-days")
    show(pair_title, pair)
    print("Assumptions:")
    for note in assumptions(rates):
        print(f"- {note}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"paper": paper, "pair_loop": pair, "assumptions": assumptions(rates),
                                        "target": target, "support": support}, indent=1))


if __name__ == "__main__":
    main()

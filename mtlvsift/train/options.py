"""The command-line options shared by the train scripts, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from mtlvsift.params import MAX_SEED, SEED, FiniteFloatRange, count
from mtlvsift.commands import DEFAULT_PROTOCOL, DEFAULT_SEEDS, PROTOCOLS
from mtlvsift.tasks import GLUE_TASKS, user_task_names
from mtlvsift.train.batches.sampling import BATCHINGS, DYNAMIC_RULES, SAMPLINGS
from mtlvsift.train.data.task_files import load_task_files
from mtlvsift.train.trackers import TRACKERS, check_trackers


def seed_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    """A click callback: ``0 1 2`` or ``0,1,2`` -> (0, 1, 2), distinct seeds from 0 to 2**32 - 1."""
    if value is None:
        return None
    try:
        seeds = tuple(int(s) for s in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of seeds such as '0 1 2 3 4'.") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise click.BadParameter(f"{value!r}: give distinct seeds from 0 to {MAX_SEED}, e.g. '0 1 2 3 4'.")
    return seeds


def _apply(options: list[Callable]) -> Callable:
    def decorate(function: Callable) -> Callable:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _register_task_files(ctx: click.Context, param: click.Parameter, paths: tuple[str, ...]) -> list[str]:
    """Parse the task files when the option is read, so that --target, --support and --tasks can
    name their tasks; the absolute paths are kept in the run's config."""
    load_task_files(paths)
    return [str(Path(p).expanduser().resolve()) for p in paths]


task_file_option = click.option(
    "--task-file", "task_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
    callback=_register_task_files, is_eager=True,  # before --help: the task options list its tasks
    help="A YAML or JSON file defining your own tasks (repeat for several); see the README.")


class TaskOption(click.Option):
    """An option naming tasks, whose help lists the names accepted: GLUE's nine and the tasks of
    the task files given before --help (``--task-file FILE --help``)."""

    def __init__(self, *args, task_help: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.task_help = task_help

    def get_help_record(self, ctx: click.Context):
        names = [t.display for t in GLUE_TASKS.values()] + user_task_names()
        others = "" if user_task_names() else " (or a task of a --task-file given before --help)"
        self.help = f"{self.task_help} Tasks: {', '.join(names)}{others}."
        return super().get_help_record(ctx)


def task_option(*names: str, help: str, **kwargs) -> Callable:
    """A --target/--support/--tasks option: ``help`` says what it is, the task names follow."""
    return click.option(*names, cls=TaskOption, task_help=help, **kwargs)


train_options = _apply([
    task_file_option,
    click.option("--model", default="distilroberta-base", show_default=True,
                 help="Hugging Face hub id, local folder, or 'minilm' (offline MiniLM package)."),
    click.option("--seed", default=0, show_default=True, type=SEED,
                 help="Training seed (heads' initialisation, dropout, batch order); the paper "
                      "loops over five from the shell."),
    click.option("--epochs", default=10, show_default=True, type=count(),
                 help="Passes over the training data (MTL: over all tasks' examples together)."),
    click.option("--lr", default=2e-5, show_default=True, type=FiniteFloatRange(min=0, min_open=True),
                 help="Peak learning rate of AdamW (linear schedule, decaying to 0)."),
    click.option("--batch-size", default=128, show_default=True, type=count(),
                 help="Global batch size (over all processes and accumulation steps)."),
    click.option("--grad-accum", default=1, show_default=True, type=count(),
                 help="Split each process's share of a batch into this many micro-batches."),
    click.option("--max-seq-length", default=128, show_default=True, type=count(8)),
    click.option("--eval-every", default=0.5, show_default=True,
                 type=FiniteFloatRange(min=0, max=1, min_open=True),
                 help="Evaluate and checkpoint every this fraction of an epoch."),
    click.option("--warmup-ratio", default=0.0, show_default=True, type=FiniteFloatRange(0, 1),
                 help="Linear warm-up over this fraction of all steps, then linear decay."),
    click.option("--weight-decay", default=0.0, show_default=True, type=FiniteFloatRange(min=0)),
    click.option("--eval-batch-size", default=256, show_default=True, type=count()),
    click.option("--data-dir", default=None, type=click.Path(file_okay=False),
                 help="GLUE folder in the original layout (default: $MTLVSIFT_GLUE_DIR, else the hub)."),
    click.option("--output-dir", default="outputs", show_default=True, type=click.Path(file_okay=False)),
    click.option("--max-train-examples", default=None, type=count(),
                 help="Cap every task's training set (a random subset, drawn with --data-seed)."),
    click.option("--data-seed", default=0, show_default=True, type=SEED,
                 help="Seed of every data subsample, independent of --seed."),
    click.option("--log-every", default=10, show_default=True, type=count(),
                 help="Read the loss back (and check it is finite) every this many steps."),
    click.option("--num-workers", default=0, show_default=True, type=count(0, 256),
                 help="DataLoader worker processes."),
    click.option("--overwrite", is_flag=True, help="Replace an existing run folder."),
    click.option("--keep-state", is_flag=True,
                 help="Keep the final accelerate state (state/) of a finished run; by default it is removed."),
    click.option("--compile", "compile_model", is_flag=True, help="torch.compile the model."),
    click.option("--report-to", "report_to", multiple=True, type=click.Choice(TRACKERS),
                 callback=lambda ctx, param, names: check_trackers(names),
                 help="Also log losses, learning rate, examples/s, sampling probabilities and dev "
                      "metrics to this tracker (repeat for several; off by default). TensorBoard "
                      "writes into the run folder's tracking/."),
    click.option("--protocol", default=DEFAULT_PROTOCOL, show_default=True,
                 type=click.Choice(PROTOCOLS, case_sensitive=False),
                 help="standard: this project's; original: the authors' code (epoch until the "
                      "first task runs out, sum of task means, heads shared by label count, ...; "
                      "docs/fidelity.md)."),
    click.option("--support-seeds", default=" ".join(map(str, DEFAULT_SEEDS)), show_default=True,
                 callback=seed_list,
                 help="Seeds of the single runs that STILTs (best of them) and dynamic sampling "
                      "(their mean) read; all must be finished."),
    click.option("--packing/--no-packing", default=True, show_default=True,
                 help="Pack each batch's rows into one sequence of real tokens (BERT/RoBERTa-family "
                      "encoders; others are padded). Changes speed, not results."),
    click.option("--varlen-attention", is_flag=True,
                 help="Packed attention by torch's varlen flash kernel (CUDA, bf16/fp16); it has no "
                      "dropout, so attention-probability dropout is off."),
])

plan_options = _apply([
    click.option("--dry-run", is_flag=True,
                 help="Resolve and print the run's plan (sizes, quotas, batches, steps, start "
                      "model); train nothing, write nothing."),
    click.option("--plan-json", default=None, type=click.Path(dir_okay=False),
                 help="Write the plan as JSON to this file (implies --dry-run)."),
])

size_options = _apply([
    click.option("--target-fraction", default=None, type=FiniteFloatRange(0, 1, min_open=True),
                 help="Size experiment: train on this fraction of the target's training set."),
    click.option("--support-ratio", default=None, type=FiniteFloatRange(0, 1000, min_open=True),
                 help="Size experiment: subsample each supporting task to K x the target's size."),
])

mtl_options = _apply([
    click.option("--batching", default="heterogeneous", show_default=True,
                 type=click.Choice(BATCHINGS, case_sensitive=False)),
    click.option("--dynamic-rule", default="softmax", show_default=True,
                 type=click.Choice(DYNAMIC_RULES, case_sensitive=False),
                 help="softmax of the gaps (the paper's code) or normalised gaps (Gottumukkala et al.)."),
    click.option("--single-scores", default=None, type=click.Path(dir_okay=False),
                 help="JSON {task: single-task dev score in [0,1]} for dynamic sampling "
                      "(default: the mean of the finished single runs)."),
])


def sampling_option(default: str) -> Callable:
    return click.option("--sampling", default=default, show_default=True,
                        type=click.Choice(SAMPLINGS, case_sensitive=False))


restart_option = click.option(
    "--restart", is_flag=True,
    help="Discard the saved state of this unfinished run (e.g. a damaged one) and train it from scratch.")

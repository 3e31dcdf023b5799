"""What a run says in words: its start-up summary, the few-steps warning, resuming, stopping.

Also what it keeps quiet: transformers' progress bars (its load reports: ``model.load_encoder``), so
that the run's own display (``progress_bar.TrainDisplay``) is the only live output, and, in a log
file, datasets' ("Tokenizing ...", "Saving the dataset"), whose redraws would fill it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mtlvsift.display import safe_text
from mtlvsift.run_folder import existing_folder

# Fewer optimizer steps than this in all and a run barely moves from its start.
FEW_STEPS = 20


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bars off ("Loading weights", "Writing model shards") while a run
    trains, as they would break into the run's own display; restored afterwards."""
    from transformers.utils import logging as hf_logging

    were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if were_enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def quiet_datasets_in_logs() -> Iterator[None]:
    """datasets' progress bars off while a run whose display is not a terminal prepares its data
    (in a terminal they stay: they show the tokenization's progress); restored afterwards."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from mtlvsift.train.progress_bar import stderr_is_terminal

    turn_off = not stderr_is_terminal() and not are_progress_bars_disabled()
    if turn_off:
        disable_progress_bars()
    try:
        yield
    finally:
        if turn_off:
            enable_progress_bars()


def few_steps_warning(total_steps: int, epochs: int, batches_per_epoch: int, batch_size: int) -> str | None:
    """One line when the optimizer takes under ``FEW_STEPS`` steps in all, else None."""
    if total_steps >= FEW_STEPS:
        return None
    return (f"Warning: this run takes only {total_steps} optimizer step(s) in all ({epochs} epoch(s) "
            f"of {batches_per_epoch} batch(es) of {batch_size}), too few to learn much: use more "
            f"training examples (--max-train-examples) or --epochs, or a smaller --batch-size.")


def exposure_line(names: list[str], passes_per_epoch: list[list[float] | None]) -> str | None:
    """How often each task's data is shown per epoch (multi-task runs): the mean over the epochs
    known up front, and when later epochs follow the dev scores, that they do."""
    if len(names) < 2:
        return None
    known = [p for p in passes_per_epoch if p is not None]
    means = [sum(epoch[i] for epoch in known) / len(known) for i in range(len(names))]
    shown = ", ".join(f"{safe_text(name)} {mean:.3g}" for name, mean in zip(names, means))
    if len(known) == len(passes_per_epoch):
        return f"Passes over each task's data per epoch: {shown}"
    return (f"Passes over each task's data in epoch 1: {shown} (later epochs follow the dev "
            f"scores; the record gives each epoch's)")


def summary_lines(config, task_data: list, batches_per_epoch: int, total_steps: int,
                  evaluations: int, device: dict[str, Any]) -> list[str]:
    """The start-up summary: where the run goes, what it trains on, how long, on what."""
    sizes = "; ".join(
        f"{d.task.display} {len(d.train):,} training"
        + (f" (of {d.available:,})" if d.available != len(d.train) else "")
        + f", {' + '.join(f'{len(split):,}' for split in d.dev.values())} dev"
        + (f", {len(d.holdout):,} held out (selected on)" if d.holdout is not None else "") for d in task_data)
    lines = [
        f"Run folder: {safe_text(config.run_dir)}",
        f"Tasks: {sizes}",
        f"Training: {batches_per_epoch:,} batches of {config.batch_size} per epoch x {config.epochs} "
        f"epoch(s) = {total_steps:,} steps; {evaluations} evaluations (every {config.eval_every:g} "
        f"epoch)",
    ]
    if config.start_model:
        start = config.start_model
        split = "held-out" if config.select_on == "holdout" else "dev"  # the score it was chosen by
        lines.append(f"Starts from: {safe_text(start['run'])} (seed {start['seed']}, {split} "
                     f"{100 * start['score']:.2f}; the best of seeds "
                     f"{' '.join(map(str, start['seeds']))})")
    elif config.init_model:
        lines.append(f"Starts from: {safe_text(config.init_model)}")
    lines.append(f"Hardware: {device['num_processes']} process(es) on {device['device']}, precision "
                 f"{device['mixed_precision']}; packed batches {'on' if device['packed_batches'] else 'off'}")
    return lines


def resume_line(progress) -> str | None:
    """"Resuming from step N (epoch E)" for a run that restarts from its checkpoint, else None."""
    if progress.step == 0:
        return None
    length = progress.epoch_batches.get(str(progress.epoch))
    epoch = progress.epoch + (progress.batch_in_epoch / length if length else 0.0)
    return f"Resuming from step {progress.step} (epoch {epoch:.2f})."


def interrupted_message(run_dir: Path, how: str = "Ctrl-C") -> str:
    """What Ctrl-C (or the stop signal ``how``, e.g. 'SIGTERM') leaves behind: the last complete
    checkpoint (a write under way has finished)."""
    from mtlvsift.train.checkpoint.state import PROGRESS_FILE  # torch: not for a dry run's messages

    state = existing_folder(run_dir / "state")
    step = None
    if state is not None:
        try:
            step = json.loads((state / PROGRESS_FILE).read_text())["step"]
        except (OSError, ValueError, KeyError, TypeError):
            step = None
    if isinstance(step, int) and not isinstance(step, bool):
        return (f"Stopped ({how}): the last checkpoint, at step {step}, is saved in "
                f"{safe_text(state)}. "
                f"Rerun the same command to resume from it.")
    return (f"Stopped ({how}) before the first checkpoint: nothing to resume from yet. Rerun the "
            f"same command to start the run again.")

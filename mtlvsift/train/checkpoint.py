"""Where a run stands (``Progress``), and saving/restoring it with the accelerate state.

A checkpoint is written into ``state.tmp/`` by every process (accelerate saves the model,
optimizer, scheduler, gradient scaler and each process's RNG states), completed with
``progress.json``, and only then swapped in for ``state/``: a half-written checkpoint is never
the one a rerun resumes from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from accelerate import Accelerator

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point
from mtlvsift.run_folder import RunFolder, atomic_write_json, existing_folder, replace_folder

PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    epoch: int = 0  # the epoch under way
    batch_in_epoch: int = 0  # batches of it already trained
    step: int = 0  # optimizer steps in all
    examples: int = 0  # training examples seen in all
    train_seconds: float = 0.0
    probabilities: dict[str, list[float]] = field(default_factory=dict)  # epoch (str) -> p
    epoch_batches: dict[str, int] = field(default_factory=dict)  # epoch (str) -> its batch count
    last_scores: dict[str, float] = field(default_factory=dict)  # task -> main dev score, latest eval
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_by_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_seconds: list[float] = field(default_factory=list)  # per evaluation
    save_seconds: list[float] = field(default_factory=list)  # per evaluation: checkpoint + best model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Progress":
        return cls(**data)


def save_checkpoint(accelerator: Accelerator, run: RunFolder, progress: Progress) -> None:
    tmp = run.path / "state.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    fault_point("mid_checkpoint")
    if accelerator.is_main_process:
        atomic_write_json(tmp / PROGRESS_FILE, progress.to_dict())
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(tmp, run.state_dir)
    accelerator.wait_for_everyone()
    fault_point("after_checkpoint")


def load_checkpoint(accelerator: Accelerator, run: RunFolder) -> Progress | None:
    """The saved progress (model and optimizer restored in place), or None to start afresh."""
    folder = existing_folder(run.state_dir)
    if folder is None:
        return None
    try:
        progress = Progress.from_dict(json.loads((folder / PROGRESS_FILE).read_text()))
        accelerator.load_state(str(folder))
    except Exception as exc:  # any damage: truncated safetensors, missing files, bad JSON
        raise MtlvsiftError(
            f"The saved state in {folder} is damaged and cannot be resumed "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}). "
            f"Rerun the same command with --restart to start this run again from scratch."
        ) from exc
    return progress


def save_best_model(accelerator: Accelerator, run: RunFolder, model, tokenizer) -> None:
    """The best model so far, as one folder loadable by the STILTs second stage."""
    if accelerator.is_main_process:
        tmp = run.path / "best.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        accelerator.unwrap_model(model).save(tmp, tokenizer)
        fault_point("mid_best")
        replace_folder(tmp, run.best_dir)
    accelerator.wait_for_everyone()

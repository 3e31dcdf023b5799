"""Where a run stands (``Progress``), and the files of a checkpoint: writing and resuming.

``state/`` holds the model's weights (``model.safetensors``), the optimizer, scheduler and gradient
scaler states, every process's RNG states and ``progress.json``. It is written as ``state.tmp/``
(by ``checkpoint_writer.CheckpointWriter``, in a background thread, from a host copy) and only
then swapped in for ``state/``: a half-written checkpoint is never the one a rerun resumes from.

Run folders are shared (group trees, results copied from a cluster), so nothing in them is
unpickled beyond ``torch.load(weights_only=True)``: ``training.pt`` holds tensors, numbers and
strings only (the RNG states converted to tensors), and an older file holding other objects is
refused with a message to rerun with ``--restart``.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import RunFolder, existing_folder

PROGRESS_FILE = "progress.json"
MODEL_FILE = "model.safetensors"  # the model's state dict (the kill-and-resume tests compare it)
TRAINING_FILE = "training.pt"  # optimizer, scheduler, scaler and every process's RNG states
# Fields a progress.json written by an earlier version lacks (their defaults stand in).
OPTIONAL_PROGRESS = ("epoch_rows",)
STATE_FORMAT = 2  # training.pt loadable with weights_only=True (format 1 pickled NumPy's RNG state)


@dataclass
class Progress:
    epoch: int = 0  # the epoch under way
    batch_in_epoch: int = 0  # batches of it already trained
    step: int = 0  # optimizer steps in all
    examples: int = 0  # training examples seen in all
    train_seconds: float = 0.0
    probabilities: dict[str, list[float]] = field(default_factory=dict)  # epoch (str) -> p
    epoch_batches: dict[str, int] = field(default_factory=dict)  # epoch (str) -> its batch count
    epoch_rows: dict[str, list[int]] = field(default_factory=dict)  # epoch (str) -> rows per task
    last_scores: dict[str, float] = field(default_factory=dict)  # task -> main dev score, latest eval
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_by_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    eval_seconds: list[float] = field(default_factory=list)  # per evaluation
    save_seconds: list[float] = field(default_factory=list)  # per evaluation: writing checkpoint + best
    checkpoint_blocked_seconds: list[float] = field(default_factory=list)  # per evaluation: the loop's wait

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Progress":
        return cls(**data)


def write_state(folder: Path, model: dict[str, torch.Tensor], optimizer: dict, scheduler: dict,
                scaler: dict | None, rng: list[dict]) -> None:
    """The resume state's files (host copies, ``rng`` one entry per process), flushed to disk."""
    folder.mkdir(parents=True)
    save_file(model, folder / MODEL_FILE, metadata={"format": "pt"})
    torch.save({"format": STATE_FORMAT, "optimizer": optimizer, "scheduler": scheduler,
                "scaler": scaler, "rng": rng}, folder / TRAINING_FILE)
    for name in (MODEL_FILE, TRAINING_FILE):
        with open(folder / name, "rb") as handle:
            os.fsync(handle.fileno())


def rng_state() -> dict[str, Any]:
    """This process's random number generators (Python, NumPy, torch CPU and CUDA), as tensors
    and numbers: what ``torch.load(weights_only=True)`` reads back."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "position": int(position), "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` took."""
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_training_state(file: Path) -> dict[str, Any]:
    """``training.pt`` read without running code from it: anything but tensors, numbers and
    strings (an older format, or a planted object) is refused."""
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise MtlvsiftError(
            f"The saved state in {file.parent} holds objects other than tensors and numbers "
            f"(written by an older version of mtlvsift, or not by mtlvsift), so it is not loaded. "
            f"Rerun the same command with --restart to start this run again from scratch.") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise MtlvsiftError(
            f"The saved state in {file.parent} is in another format than this version of mtlvsift "
            f"writes. Rerun the same command with --restart to start this run again from scratch.")
    return state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _seconds(values: Any) -> bool:
    return isinstance(values, list) and all(_number(v) and v >= 0 for v in values)


def _position_problem(data: dict[str, Any], epochs: int) -> str | None:
    """Where the run stands: epoch, batch, step and examples, consistent with each other."""
    epoch, batch, step, batches = data["epoch"], data["batch_in_epoch"], data["step"], data["epoch_batches"]
    if not all(_count(v) for v in (epoch, batch, step, data["examples"])):
        return "epoch, batch_in_epoch, step and examples must be non-negative integers"
    if epoch >= epochs:
        return f"'epoch' is {epoch}, but this run's epochs are 0 to {epochs - 1}"
    if (not isinstance(batches, dict) or set(batches) != {str(e) for e in range(epoch + 1)}
            or not all(_count(n) and n > 0 for n in batches.values())):
        return f"'epoch_batches' must give the batch count of each epoch from 0 to {epoch}"
    if not 1 <= batch <= batches[str(epoch)]:
        return f"'batch_in_epoch' is {batch}, in an epoch of {batches[str(epoch)]} batches"
    expected = sum(batches[str(e)] for e in range(epoch)) + batch
    if step != expected:
        return f"'step' is {step}, but batch {batch} of epoch {epoch} is step {expected}"
    if data["examples"] < step or not _number(data["train_seconds"]) or data["train_seconds"] < 0:
        return "'examples' must count at least one per step, 'train_seconds' be a duration"
    return None


def _sampling_problem(data: dict[str, Any], tasks: list[str]) -> str | None:
    """Each epoch's task probabilities, and the last dev scores dynamic sampling reads."""
    probabilities = data["probabilities"]
    if not isinstance(probabilities, dict) or set(probabilities) != {str(e) for e in range(data["epoch"] + 1)}:
        return f"'probabilities' must give each epoch's from 0 to {data['epoch']}"
    for p in probabilities.values():
        if (not isinstance(p, list) or len(p) != len(tasks) or not all(_number(x) and 0 <= x <= 1 for x in p)
                or abs(sum(p) - 1) > 1e-6):
            return f"'probabilities' must be {len(tasks)} probabilities summing to 1 per epoch"
    scores = data["last_scores"]
    if scores == {} and data["history"] == []:  # no evaluation yet (a stop's checkpoint)
        return None
    if not isinstance(scores, dict) or set(scores) != set(tasks) or not all(map(_number, scores.values())):
        return f"'last_scores' must hold a score of each task ({', '.join(tasks)})"
    return None


def _evaluations_problem(data: dict[str, Any], tasks: list[str]) -> str | None:
    """The evaluations so far, one per evaluation's checkpoint, the last at this step or (a
    checkpoint written where a stop signal ended the run) before it; the best among them."""
    history = data["history"]
    timings = [data[k] for k in ("eval_seconds", "save_seconds", "checkpoint_blocked_seconds")]
    if not isinstance(history, list) or not all(_seconds(t) and len(t) == len(history) for t in timings):
        return "'history' must hold each evaluation, and the timings one entry per evaluation"
    if not history:  # stopped before the first evaluation
        if data["best"] is not None or data["best_by_task"] != {}:
            return "'best' and 'best_by_task' must be empty before the first evaluation"
        return None
    steps = [h.get("step") if isinstance(h, dict) else None for h in history]
    if (not all(_count(s) for s in steps) or steps != sorted(set(steps)) or steps[-1] > data["step"]
            or not all(isinstance(h.get("metrics"), dict) and set(h["metrics"]) == set(tasks) for h in history)):
        return "'history' must hold evaluations of every task at increasing steps, up to 'step'"
    bests = [data["best"], *(data["best_by_task"].values() if isinstance(data["best_by_task"], dict) else [None])]
    if (not isinstance(data["best_by_task"], dict) or set(data["best_by_task"]) != set(tasks)
            or not all(isinstance(b, dict) and b.get("step") in steps and _number(b.get("score")) for b in bests)):
        return "'best' and 'best_by_task' must each name an evaluation of 'history' and its score"
    return None


def progress_problem(data: Any, epochs: int, tasks: list[str]) -> str | None:
    """What in a progress.json cannot be where this run stands (an edited or foreign file), or None."""
    names = {f.name for f in fields(Progress)}
    if not isinstance(data, dict) or not names - set(OPTIONAL_PROGRESS) <= set(data) <= names:
        return f"it must hold exactly the fields {', '.join(sorted(names))}"
    return (_position_problem(data, epochs) or _sampling_problem(data, tasks)
            or _evaluations_problem(data, tasks) or _rows_problem(data, tasks))


def _rows_problem(data: dict[str, Any], tasks: list[str]) -> str | None:
    """Each epoch's rows per task (a state written before they were kept has none)."""
    rows = data.get("epoch_rows", {})
    if (not isinstance(rows, dict) or not set(rows) <= set(data["epoch_batches"])
            or not all(isinstance(r, list) and len(r) == len(tasks) and all(map(_count, r))
                       for r in rows.values())):
        return f"'epoch_rows' must give each epoch's rows of the {len(tasks)} tasks"
    return None


def state_misfit(folder: Path, problem: str) -> MtlvsiftError:
    """The error for a progress file that cannot be where this run stands."""
    return MtlvsiftError(f"The saved state in {folder} does not fit this run ({PROGRESS_FILE}: {problem}). "
                         f"Rerun the same command with --restart to start this run again from scratch.")


def load_checkpoint(accelerator: Accelerator, run: RunFolder, model, optimizer, scheduler, epochs: int,
                    tasks: list[str]) -> Progress | None:
    """The saved progress (model, optimizer, scheduler, scaler and RNG restored in place), or None
    to start afresh. ``epochs`` and ``tasks`` are the run's: a progress file that does not fit
    them (edited by hand, or another run's) is refused."""
    folder = existing_folder(run.state_dir)
    if folder is None:
        return None
    try:
        data = json.loads((folder / PROGRESS_FILE).read_text())
        if problem := progress_problem(data, epochs, tasks):
            raise state_misfit(folder, problem)
        progress = Progress.from_dict(data)
        state = read_training_state(folder / TRAINING_FILE)
        if len(state["rng"]) != accelerator.num_processes:
            raise MtlvsiftError(
                f"The saved state in {folder} was written by {len(state['rng'])} process(es); resume "
                f"it with the same number, or rerun with --restart to start again from scratch.")
        accelerator.unwrap_model(model).load_state_dict(load_file(folder / MODEL_FILE))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if accelerator.scaler is not None and state["scaler"] is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][accelerator.process_index])
    except MtlvsiftError:
        raise
    except Exception as exc:  # any damage: truncated safetensors, missing files, bad JSON
        raise MtlvsiftError(
            f"The saved state in {folder} is damaged and cannot be resumed "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}). "
            f"Rerun the same command with --restart to start this run again from scratch."
        ) from exc
    return progress

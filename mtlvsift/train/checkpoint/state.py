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
import os
import pickle
import random
from dataclasses import asdict, dataclass, field
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
    except pickle.UnpicklingError as exc:
        raise MtlvsiftError(
            f"The saved state in {file.parent} holds objects other than tensors and numbers "
            f"(written by an older version of mtlvsift, or not by mtlvsift), so it is not loaded. "
            f"Rerun the same command with --restart to start this run again from scratch.") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise MtlvsiftError(
            f"The saved state in {file.parent} is in another format than this version of mtlvsift "
            f"writes. Rerun the same command with --restart to start this run again from scratch.")
    return state


def load_checkpoint(accelerator: Accelerator, run: RunFolder, model, optimizer, scheduler) -> Progress | None:
    """The saved progress (model, optimizer, scheduler, scaler and RNG restored in place), or None
    to start afresh."""
    folder = existing_folder(run.state_dir)
    if folder is None:
        return None
    try:
        progress = Progress.from_dict(json.loads((folder / PROGRESS_FILE).read_text()))
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

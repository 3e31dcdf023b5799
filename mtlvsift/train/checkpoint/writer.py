"""Checkpoints off the critical path: a thread copies the state to host memory and writes it.

At every evaluation the loop calls ``CheckpointWriter.checkpoint``, which

1. waits for the previous write (normally long finished) and, if it failed, raises its error on
   every process: a failed write surfaces at the next checkpoint, or at ``finish``;
2. takes what changes before the next optimizer step (every process's RNG states, gathered; the
   scheduler, scaler and progress) and starts a thread on the main process that
3. copies the model and optimizer states into host buffers (reused from one checkpoint to the
   next; pinned, on a side stream, on a GPU), then writes ``best/`` (when the model improved),
   ``best-<task>/`` of each task whose own best is not ``best/`` and improved (from the same host
   copy), and ``state/``, each into a ``.tmp`` folder swapped in by ``replace_folder``; last it
   removes the ``best-<task>/`` folders that ``best/`` now stands for.

The next step's forward and backward passes read the weights but change neither them nor the
optimizer state: only ``optimizer.step()`` does, so the loop calls ``before_optimizer_step``
first, which waits until the copy is done. The loop's blocked time per checkpoint (steps 1-2 and
that wait) is recorded as ``checkpoint_blocked_seconds``, the write's own time as
``save_seconds``. A kill at any moment leaves the last complete ``state/`` (a rerun resumes from
it and replays the same batches). Only the main process writes: DDP keeps weights and optimizer
states identical on every process. ``finish`` waits for the last write before the run record is
written; ``close`` waits without raising, for a run that stops on another error;
``checkpoint_at_stop`` writes where a stop signal ended the run, and waits for it.
"""

from __future__ import annotations

import copy
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point
from mtlvsift.run_folder import RunFolder, atomic_write_json, replace_folder
from mtlvsift.stop_signals import pending_signal, stop_now
from mtlvsift.train.checkpoint.state import PROGRESS_FILE, Progress, rng_state, write_state
from mtlvsift.train.checkpoint.task_models import task_best_dir, tasks_with_own_best
from mtlvsift.train.model.multitask import model_folder_problem


@dataclass
class Snapshot:
    """One checkpoint's state in host memory."""

    model: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    scaler: dict | None
    rng: list[dict]  # one per process
    progress: dict[str, Any]
    best: bool  # also write best/
    task_bests: tuple[str, ...] = ()  # also write best-<task>/ of these tasks
    drop_task_bests: tuple[str, ...] = ()  # once state/ is written, remove these tasks' best-<task>/
    timed: bool = True  # an evaluation's (its write's seconds recorded); a stop's is not


class HostCopy:
    """Copies nested state (dicts, lists, tensors) into host buffers kept from the last copy, so
    a checkpoint costs one memcpy per tensor and no fresh allocation."""

    def __init__(self, pin: bool) -> None:
        self.pin = pin
        self.buffers: dict[str, torch.Tensor] = {}

    def __call__(self, value: Any, path: str = "") -> Any:
        if isinstance(value, torch.Tensor):
            buffer = self.buffers.get(path)
            if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
                buffer = torch.empty(value.shape, dtype=value.dtype, pin_memory=self.pin)
                self.buffers[path] = buffer
            return buffer.copy_(value.detach(), non_blocking=self.pin)
        if isinstance(value, dict):
            return {k: self(v, f"{path}/{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self(v, f"{path}/{i}") for i, v in enumerate(value))
        return copy.deepcopy(value)


def task_best_changes(progress: Progress, improved: Collection[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tasks whose ``best-<task>/`` this checkpoint writes (their own best improved and is not
    ``best/``'s step), and those whose folder it removes (``best/`` holds their best now)."""
    own = tasks_with_own_best(progress.best, progress.best_by_task)
    tasks = list(progress.best_by_task)
    return tuple(t for t in tasks if t in own and t in improved), tuple(t for t in tasks if t not in own)


def check_saved_models(run: RunFolder, progress: Progress) -> None:
    """A resumed run's best models must be whole: ``best/``, and each task's own that a
    checkpoint wrote (a run started by an older version has none)."""
    if progress.best is None:
        return
    own = [task_best_dir(run.path, t) for t in tasks_with_own_best(progress.best, progress.best_by_task)]
    for folder in [run.best_dir, *(f for f in own if f.exists())]:
        if problem := model_folder_problem(folder):
            raise MtlvsiftError(f"The best model saved so far, {folder}, is damaged ({problem}). Rerun the "
                                f"same command with --restart to train this run from scratch.")


class CheckpointWriter:
    def __init__(self, accelerator: Accelerator, run: RunFolder, model, optimizer, scheduler,
                 tokenizer) -> None:
        self.accelerator, self.run = accelerator, run
        self.model, self.optimizer, self.scheduler, self.tokenizer = model, optimizer, scheduler, tokenizer
        cuda = accelerator.device.type == "cuda"
        self.host = HostCopy(pin=cuda)
        self.stream = torch.cuda.Stream(accelerator.device) if cuda else None
        self.thread: threading.Thread | None = None
        self.copied: threading.Event | None = None  # set once the state is in host memory
        self.error: BaseException | None = None
        self.seconds = 0.0  # the last write's duration
        self.index: int | None = None  # the evaluation the running write belongs to (None: a stop's)

    def checkpoint(self, progress: Progress, best: bool, improved: Collection[str] = (),
                   timed: bool = True) -> None:
        """Wait for the previous write; start copying and writing this checkpoint in the
        background (``best``: also ``best/``; ``improved``: the tasks whose own best score this
        evaluation raised, whose ``best-<task>/`` is written where it is not ``best/``; not
        ``timed``: no evaluation's, so no entry in the per-evaluation timings)."""
        start = time.perf_counter()
        self._collect(progress)
        accelerator = self.accelerator
        rng = rng_state()
        rng = gather_object([rng]) if accelerator.num_processes > 1 else [rng]
        # progress.json stores the times known when it is taken; the record gets the whole.
        self.index = None
        if timed:
            progress.save_seconds.append(0.0)
            progress.checkpoint_blocked_seconds.append(time.perf_counter() - start)
            self.index = len(progress.save_seconds) - 1
        if accelerator.is_main_process:
            scaler = accelerator.scaler
            snapshot = Snapshot(accelerator.unwrap_model(self.model).state_dict(), self.optimizer.state_dict(),
                                copy.deepcopy(self.scheduler.state_dict()),
                                None if scaler is None else copy.deepcopy(scaler.state_dict()), rng,
                                copy.deepcopy(progress.to_dict()), best, *task_best_changes(progress, improved),
                                timed=timed)
            ready = None
            if self.stream is not None:  # the side stream copies what the loop's stream computed
                ready = torch.cuda.Event()
                ready.record()
            self.copied = threading.Event()
            self.thread = threading.Thread(target=self._copy_and_write, args=(snapshot, ready),
                                           name="checkpoint-writer")
            self.thread.start()
        if timed:
            progress.checkpoint_blocked_seconds[-1] = time.perf_counter() - start

    def checkpoint_at_stop(self, progress: Progress) -> None:
        """Where a stop signal ends the run between evaluations: this step's checkpoint (no
        evaluation's: ``best/`` and the timings stay as they are), written before it returns, so
        a rerun (a requeued job) resumes here and replays no step."""
        self.checkpoint(progress, best=False, timed=False)
        self.finish(progress)

    def stop_if_asked(self, progress: Progress, at_log: bool, checkpointed: bool) -> None:
        """At the end of a step: a stop signal received meanwhile ends the run here, with this
        step's checkpoint on disk (``checkpointed``: the evaluation's, else one written now), so
        that the rerun (a requeued SLURM job) replays no step. Several processes agree at log
        points (one collective): each may get the signal during another step."""
        accelerator = self.accelerator
        if accelerator.num_processes == 1:
            signum = pending_signal()
        elif at_log:
            asked = torch.tensor(pending_signal() or 0, device=accelerator.device)
            signum = int(accelerator.reduce(asked, "max").item()) or None
        else:
            return
        if signum is None:
            return
        if checkpointed:
            self.finish(progress)
        else:
            self.checkpoint_at_stop(progress)
        stop_now(signum)

    def before_optimizer_step(self, progress: Progress) -> None:
        """The copy must be done before the optimizer changes weights and moments."""
        if self.copied is None:
            return
        start = time.perf_counter()
        self.copied.wait()
        self.copied = None
        if self.index is not None:
            progress.checkpoint_blocked_seconds[self.index] += time.perf_counter() - start

    def _copy(self, snapshot: Snapshot, ready) -> None:
        """Replace the snapshot's live model and optimizer tensors by host copies."""
        if self.stream is None:
            snapshot.model = self.host(snapshot.model, "model")
            snapshot.optimizer = self.host(snapshot.optimizer, "optimizer")
            return
        with torch.cuda.stream(self.stream):
            self.stream.wait_event(ready)
            snapshot.model = self.host(snapshot.model, "model")
            snapshot.optimizer = self.host(snapshot.optimizer, "optimizer")
        self.stream.synchronize()

    def finish(self, progress: Progress) -> None:
        """Wait for the last write (the run's record comes after it); raise if it failed."""
        self._collect(progress)

    def close(self) -> None:
        """Wait for a write under way without raising: the run is stopping on another error."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            self.copied = None

    def _collect(self, progress: Progress) -> None:
        message = None
        if self.thread is not None:
            self.thread.join()
            self.thread = None
            self.copied = None
            if self.index is not None:
                progress.save_seconds[self.index] = self.seconds
            if self.error is not None:
                message = str(self.error) or type(self.error).__name__
        if self.accelerator.num_processes > 1:  # every process stops, not only the writer
            message = broadcast_object_list([message])[0]
        if message is None:
            return
        error, self.error = self.error, None
        if isinstance(error, Exception) and not isinstance(error, MtlvsiftError):
            raise error  # a bug, not a full disk: keep its traceback
        raise MtlvsiftError(message) from error

    def _copy_and_write(self, snapshot: Snapshot, ready) -> None:
        """The host copy (then the loop may step again), best/ when improved, the tasks' own best
        models, then state/: each folder written beside and swapped in whole."""
        start = time.perf_counter()
        run = self.run
        try:
            try:
                self._copy(snapshot, ready)
            finally:
                self.copied.set()
            if snapshot.best:
                self._write_model(snapshot, "the best model", run.best_dir)
            for task in snapshot.task_bests:
                self._write_model(snapshot, f"the best model of {task}", task_best_dir(run.path, task))
            with run.saving("the checkpoint", run.state_dir):
                tmp = run.path / "state.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                write_state(tmp, snapshot.model, snapshot.optimizer, snapshot.scheduler,
                            snapshot.scaler, snapshot.rng)
                fault_point("mid_checkpoint")
                if snapshot.timed:
                    snapshot.progress["save_seconds"][-1] = time.perf_counter() - start
                atomic_write_json(tmp / PROGRESS_FILE, snapshot.progress)
                replace_folder(tmp, run.state_dir)
                fault_point("after_checkpoint")
            # Only now: until state/ says so, a resumed run still expects these folders.
            for task in snapshot.drop_task_bests:
                folder = task_best_dir(run.path, task)
                shutil.rmtree(folder.with_name(folder.name + ".old"), ignore_errors=True)  # first:
                shutil.rmtree(folder, ignore_errors=True)  # recover() would bring an .old back
        except BaseException as exc:  # raised in the loop's thread by _collect
            self.error = exc
        self.seconds = time.perf_counter() - start

    def _write_model(self, snapshot: Snapshot, what: str, folder) -> None:
        """The snapshot's model into ``folder`` (written as ``<folder>.tmp``, then swapped in)."""
        with self.run.saving(what, folder):
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.accelerator.unwrap_model(self.model).save(tmp, self.tokenizer, state=snapshot.model)
            fault_point("mid_best")
            replace_folder(tmp, folder)

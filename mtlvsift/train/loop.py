"""The one training loop of all three scripts (single/STILTs, pairwise MTL, MTL_All).

``run_training`` sets a run up: the accelerator, the run folder (skip a finished run, refuse a
changed config), the data, what the run needs from other runs (``prerequisites``), the model,
then the folder's lock. ``Trainer`` holds the wired-up pieces and trains: per epoch, task
probabilities p (dynamic sampling reads the last dev scores), the sampler's global batches for
(seed, epoch, p), each process training on its slice. Every ``eval_every`` of an epoch: evaluate
every task, keep the best model by the selection score, checkpoint. A rerun of the same command
resumes from the checkpoint; a completed run writes ``result.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from transformers import get_linear_schedule_with_warmup

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point
from mtlvsift.run_folder import RunFolder, RunLock
from mtlvsift.run_record import build_record, selection_entry, write_record
from mtlvsift.train.batches import MixedTaskDataset, micro_batch_collator, prepare_task_data, train_loader
from mtlvsift.train.checkpoint import Progress, load_checkpoint
from mtlvsift.train.checkpoint_writer import CheckpointWriter
from mtlvsift.train.config import TrainConfig
from mtlvsift.train.evaluation import build_eval_batches, evaluate
from mtlvsift.train.model import MultiTaskModel, is_model_folder, load_encoder, load_tokenizer, \
    model_folder_problem
from mtlvsift.train.packing import batch_collator, check_packing_options
from mtlvsift.train.prerequisites import with_single_scores, with_start_model
from mtlvsift.train.progress_bar import TrainDisplay
from mtlvsift.train.sampling import epoch_batch_sizes, epoch_schedule, process_slice, task_probabilities


def run_training(config: TrainConfig, restart: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip) the run that ``config`` describes; returns its record."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # Launched by torchrun on a machine without GPUs: DDP over gloo on the CPU.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))
    main = accelerator.is_main_process
    config = with_single_scores(config)  # part of the run's identity
    run = RunFolder(config.run_dir)
    if config.overwrite and main and run.path.exists():
        run.prepare(config.identity(), overwrite=True)
    accelerator.wait_for_everyone()
    if run.prepare(config.identity(), overwrite=False) == "complete":
        if main:
            print(f"{run.path} is already complete (pass --overwrite to train it again).")
        return json.loads(run.result_file.read_text())

    set_seed(config.seed)
    tokenizer = load_tokenizer(config.init_from or config.model)
    task_data = prepare_task_data(config, tokenizer, accelerator.main_process_first)
    config = with_start_model(config, task_data[0].available)
    if config.init_model and is_model_folder(config.init_model):
        problem = model_folder_problem(config.init_model)
        if problem:
            raise MtlvsiftError(
                f"The model to start from, {config.init_model}, is damaged ({problem}). Train that "
                f"run again (its command with --overwrite) or pass --init-from another model folder.")
    encoder = load_encoder(config.init_model or config.model)
    model = MultiTaskModel(encoder, [d.task.name for d in task_data],
                           [d.task.num_labels for d in task_data])
    check_packing_options(config, accelerator.device, accelerator.mixed_precision)
    # Everything that can fail on the user's input has been checked: now the folder is claimed.
    lock = RunLock(run.path)
    if main:
        lock.acquire()
        try:
            run.write_config(config.identity())
        except OSError as exc:
            lock.release()
            raise MtlvsiftError(f"Could not write the run config in {run.path}: {exc}. "
                                f"Check the disk and permissions, then rerun.") from exc
        if restart:
            run.discard_progress()
        run.recover()
    accelerator.wait_for_everyone()
    try:
        return Trainer(config, accelerator, run, model, tokenizer, task_data).train()
    finally:
        if main:
            lock.release()


def eval_points(steps_per_epoch: int, eval_every: float) -> set[int]:
    """Batch counts within an epoch after which to evaluate: every ``eval_every`` and the end."""
    count = math.ceil(1 / eval_every - 1e-9)
    points = {min(steps_per_epoch, max(1, math.ceil(k * eval_every * steps_per_epoch - 1e-9)))
              for k in range(1, count + 1)}
    return points | {steps_per_epoch}


def make_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    # The usual transformer recipe: no weight decay on biases and LayerNorm weights.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # Fused: one kernel per step on CUDA and on the CPU (five times faster than foreach there).
    return torch.optim.AdamW(groups, lr=config.lr, fused=device.type in ("cuda", "cpu"))


class Trainer:
    """One run's wired-up pieces (accelerator, folder, model, optimizer, schedule, data, progress)
    and the loop over them."""

    def __init__(self, config: TrainConfig, accelerator: Accelerator, run: RunFolder,
                 model: MultiTaskModel, tokenizer, task_data: list) -> None:
        self.config, self.accelerator, self.run = config, accelerator, run
        self.tokenizer, self.task_data = tokenizer, task_data
        self.main, device = accelerator.is_main_process, accelerator.device
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.names = [d.task.name for d in task_data]
        self.sizes = [len(d.train) for d in task_data]
        self.steps_per_epoch = len(epoch_batch_sizes(sum(self.sizes), config.batch_size,
                                                     accelerator.num_processes))
        self.eval_points = eval_points(self.steps_per_epoch, config.eval_every)
        total_steps = self.steps_per_epoch * config.epochs
        optimizer = make_optimizer(model, config, device)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, round(config.warmup_ratio * total_steps), total_steps)
        mixed = accelerator.mixed_precision in ("fp16", "bf16")
        self.collate, notice = batch_collator(config, model, tokenizer, 8 if mixed else None)
        self.packed = config.packing and notice is None
        if notice and self.main:
            print(notice)
        if config.compile_model:
            # The encoder is where the time goes; the heads pick rows by a data-dependent mask,
            # which would break the graph. Module.compile keeps the parameter names, so compiled
            # and eager runs share checkpoints. Packed batches mark their own dynamic dimensions.
            model.encoder.compile(dynamic=None if model.budgeted_shapes else True)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(model, optimizer, scheduler)
        self.progress = load_checkpoint(accelerator, run, self.model, self.optimizer, self.scheduler) \
            or Progress()
        self.checkpoints = CheckpointWriter(accelerator, run, self.model, self.optimizer, self.scheduler,
                                            tokenizer)
        if self.progress.best is not None and (problem := model_folder_problem(run.best_dir)):
            raise MtlvsiftError(f"The best model saved so far, {run.best_dir}, is damaged ({problem}). "
                                f"Rerun the same command with --restart to train this run from scratch.")
        if self.main:
            run.trim_log(self.progress.step)
        self.eval_batches = build_eval_batches(task_data, self.collate, config.eval_batch_size,
                                               accelerator.process_index, accelerator.num_processes)
        self.dataset = MixedTaskDataset([d.train for d in task_data])
        self.running = _Running(len(self.names), device)
        title = f"{config.method} {config.name} seed {config.seed}"
        self.display = TrainDisplay(self.main, title, total_steps, self.progress.step)

    def train(self) -> dict[str, Any]:
        try:
            with self.display:
                for epoch in range(self.progress.epoch, self.config.epochs):
                    self.train_epoch(epoch)
            return self.finish()
        finally:
            self.checkpoints.close()  # a run stopped by an error still completes the write under way

    def train_epoch(self, epoch: int) -> None:
        config, progress = self.config, self.progress
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        p = self.epoch_probabilities(epoch)
        schedule = epoch_schedule(self.sizes, list(p.values()), config.batch_size, config.seed,
                                  epoch, config.batching or "heterogeneous", world)
        local = [process_slice(b, rank, world) for b in schedule[progress.batch_in_epoch:]]
        loader = train_loader(self.dataset, local, micro_batch_collator(self.collate, config.grad_accum),
                              config.num_workers, pin_memory=self.accelerator.device.type == "cuda")
        tick = time.perf_counter()
        for batch_index, micro_batches in enumerate(loader, start=progress.batch_in_epoch):
            global_size = len(schedule[batch_index])
            self.step(micro_batches, global_size)
            progress.step += 1
            progress.batch_in_epoch = batch_index + 1
            progress.examples += global_size
            self.display.advance()
            fault_point("step")
            at_eval = progress.batch_in_epoch in self.eval_points
            if progress.step % config.log_every == 0 or at_eval:
                elapsed = time.perf_counter() - tick
                progress.train_seconds += elapsed
                self.log(elapsed, p)
                tick = time.perf_counter()
            if at_eval:
                self.evaluate_and_checkpoint(p)
                tick = time.perf_counter()
        progress.epoch, progress.batch_in_epoch = epoch + 1, 0

    def epoch_probabilities(self, epoch: int) -> dict[str, float]:
        """p of this epoch: recorded once, so a resumed run reuses it."""
        config, progress, key = self.config, self.progress, str(epoch)
        if key not in progress.probabilities:
            if len(self.sizes) == 1:
                p = [1.0]
            else:
                current = [progress.last_scores[n] for n in self.names] if progress.last_scores else None
                single = [config.single_scores[n] for n in self.names] if config.single_scores else None
                p = task_probabilities(config.sampling, self.sizes, epoch, single, current,
                                       config.dynamic_rule or "softmax").tolist()
            progress.probabilities[key] = [float(x) for x in p]
        return dict(zip(self.names, progress.probabilities[key]))

    def step(self, micro_batches: list[dict], global_size: int) -> None:
        """One optimizer step on this process's slice of a global batch of ``global_size`` rows.

        Each micro-batch's summed loss is scaled by W / global_size: DDP averages the W
        processes' gradients, so the step follows the mean loss over the whole global batch.
        """
        accelerator, model = self.accelerator, self.model
        model.train()
        scale = accelerator.num_processes / global_size
        for i, batch in enumerate(micro_batches):
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            last = i == len(micro_batches) - 1
            with nullcontext() if last else accelerator.no_sync(model):
                loss, task_losses = model(**batch)
                accelerator.backward(loss * scale)
            self.running.add(loss.detach(), task_losses.detach())
        self.running.count(global_size)
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        self.checkpoints.before_optimizer_step(self.progress)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def log(self, elapsed: float, p: dict[str, float]) -> None:
        """Mean loss since the last log (one host sync), checked finite, shown and appended."""
        progress = self.progress
        loss_sum, examples, *task_sums = self.running.take(self.accelerator)
        mean_loss = loss_sum / max(examples, 1)
        bad = [n for n, v in zip(self.names, task_sums) if not math.isfinite(v)]
        if bad or not math.isfinite(mean_loss):
            raise MtlvsiftError(
                f"The training loss became non-finite ({mean_loss}) by step {progress.step} "
                f"(epoch {progress.epoch + 1}), in task(s): {', '.join(bad) or 'unknown'}. The last "
                f"good checkpoint is kept in {self.run.state_dir}. Lower --lr or check the data, "
                f"then rerun (add --restart to start from scratch)."
            )
        speed = examples / elapsed if elapsed > 0 else 0.0
        self.display.status(mean_loss, speed, p)
        if self.main:
            self.run.append_log({"step": progress.step, "epoch": progress.epoch + 1,
                                 "loss": mean_loss, "lr": self.scheduler.get_last_lr()[0],
                                 "examples_per_second": speed})

    def evaluate_and_checkpoint(self, p: dict[str, float]) -> None:
        progress = self.progress
        start = time.perf_counter()
        metrics = evaluate(self.model, self.accelerator, self.task_data, self.eval_batches)
        progress.eval_seconds.append(time.perf_counter() - start)
        epoch = progress.epoch + progress.batch_in_epoch / self.steps_per_epoch
        entry = {"step": progress.step, "epoch": round(epoch, 6), "metrics": metrics, "probabilities": p}
        progress.history.append(entry)
        progress.last_scores = {n: selection_entry(entry, n)["score"] for n in self.names}
        improved = set()
        for name in self.names:
            candidate = selection_entry(entry, name)
            current = progress.best_by_task.get(name)
            if current is None or candidate["score"] > current["score"]:
                progress.best_by_task[name] = candidate
                improved.add(name)
        candidate = selection_entry(entry, self.config.target)
        is_best = progress.best is None or candidate["score"] > progress.best["score"]
        self.display.evaluation(progress.step, epoch, metrics, improved)
        if is_best:
            progress.best = candidate
        self.checkpoints.checkpoint(progress, best=is_best)
        previous = f"; the previous write took {progress.save_seconds[-2]:.2f} s" \
            if len(progress.save_seconds) > 1 else ""
        self.display.message(f"Checkpoint at step {progress.step}: the loop waited "
                             f"{progress.checkpoint_blocked_seconds[-1]:.2f} s, the write goes on in "
                             f"the background{previous}.")

    def finish(self) -> dict[str, Any]:
        """Write the run record; a finished run keeps no resume state (unless --keep-state)."""
        accelerator, run = self.accelerator, self.run
        self.checkpoints.finish(self.progress)
        device = {"device": str(accelerator.device), "num_processes": accelerator.num_processes,
                  "mixed_precision": accelerator.mixed_precision, "packed_batches": self.packed}
        record = build_record(self.config, self.progress,
                              {d.task.name: len(d.train) for d in self.task_data},
                              {d.task.name: d.available for d in self.task_data}, device)
        if self.main:
            with run.saving("the run record"):
                write_record(run.result_file, record)
            fault_point("after_result")
            if not self.config.keep_state:
                shutil.rmtree(run.state_dir, ignore_errors=True)
            best = record["best"]
            self.display.message(f"Done: {run.result_file}  best {best['metric']} "
                                 f"{100 * best['score']:.2f} at epoch {best['epoch']:.1f}")
        accelerator.wait_for_everyone()
        return record


class _Running:
    """Loss sums kept on the device between log points (no host synchronisation per step)."""

    def __init__(self, num_tasks: int, device: torch.device) -> None:
        self.sums = torch.zeros(num_tasks + 2, device=device, dtype=torch.float64)

    def add(self, loss: torch.Tensor, task_losses: torch.Tensor) -> None:
        self.sums[0] += loss
        self.sums[2:] += task_losses

    def count(self, global_size: int) -> None:
        self.sums[1] += global_size  # counted once per process, divided out in take()

    def take(self, accelerator: Accelerator) -> list[float]:
        values = accelerator.reduce(self.sums.clone(), "sum").tolist()
        values[1] /= accelerator.num_processes
        self.sums.zero_()
        return values

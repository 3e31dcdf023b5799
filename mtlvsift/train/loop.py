"""The one training loop of all three scripts (single/STILTs, pairwise MTL, MTL_All).

Per epoch: task probabilities p (dynamic sampling reads the last dev scores), the sampler's global
batches for (seed, epoch, p), each process training on its slice. Every ``eval_every`` of an
epoch: evaluate every task, keep the best model by the selection score, checkpoint. A rerun of
the same command resumes from the checkpoint; a completed run writes ``result.json``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from transformers import get_linear_schedule_with_warmup

from mtlvsift.train.batches import MixedTaskDataset, micro_batch_collator, prepare_task_data, train_loader
from mtlvsift.train.checkpoint import Progress, load_checkpoint, save_best_model, save_checkpoint
from mtlvsift.train.config import TrainConfig, supporting_model
from mtlvsift.train.data import make_collator
from mtlvsift.train.progress_bar import TrainDisplay
from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.evaluation import build_eval_batches, evaluate
from mtlvsift.faults import fault_point
from mtlvsift.train.model import MultiTaskModel, is_model_folder, load_encoder, load_tokenizer, \
    model_folder_problem
from mtlvsift.record import build_record, selection_entry
from mtlvsift.run_folder import RunFolder, RunLock, atomic_write_json
from mtlvsift.train.sampling import epoch_batch_sizes, epoch_schedule, process_slice, task_probabilities


def run_training(config: TrainConfig, restart: bool = False) -> dict[str, Any] | None:
    """Train (or resume, or skip) the run that ``config`` describes; returns its record."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # Launched by torchrun on a machine without GPUs: DDP over gloo on the CPU.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))
    main = accelerator.is_main_process
    run = RunFolder(config.run_dir)
    if config.overwrite and main and run.path.exists():
        run.prepare(config.identity(), overwrite=True)
    accelerator.wait_for_everyone()
    status = run.prepare(config.identity(), overwrite=False)
    if status == "complete":
        if main:
            print(f"{run.path} is already complete (pass --overwrite to train it again).")
        return json.loads(run.result_file.read_text())

    set_seed(config.seed)
    tokenizer = load_tokenizer(config.init_from or config.model)
    task_data = prepare_task_data(config, tokenizer, accelerator.main_process_first)
    config.init_model = config.init_from
    if config.method == "stilts" and config.init_from is None:
        config.init_model = str(supporting_model(config, task_data[0].available))
    if config.init_model and is_model_folder(config.init_model):
        problem = model_folder_problem(config.init_model)
        if problem:
            raise MtlvsiftError(
                f"The model to start from, {config.init_model}, is damaged ({problem}). Train that "
                f"run again (its command with --overwrite) or pass --init-from another model folder.")
    encoder = load_encoder(config.init_model or config.model)
    model = MultiTaskModel(encoder, [d.task.name for d in task_data],
                           [d.task.num_labels for d in task_data])
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
            _discard_progress(run)
        run.recover()
    accelerator.wait_for_everyone()
    try:
        return _train(config, accelerator, run, model, tokenizer, task_data)
    finally:
        if main:
            lock.release()


def _discard_progress(run: RunFolder) -> None:
    for folder in (run.state_dir, run.best_dir, run.path / "state.old", run.path / "best.old"):
        if folder.exists():
            shutil.rmtree(folder)
    run.log_file.unlink(missing_ok=True)


def _optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device):
    # The usual transformer recipe: no weight decay on biases and LayerNorm weights.
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, fused=device.type == "cuda")


def _train(config, accelerator, run, model, tokenizer, task_data) -> dict[str, Any]:
    main, device = accelerator.is_main_process, accelerator.device
    world, rank = accelerator.num_processes, accelerator.process_index
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sizes = [len(d.train) for d in task_data]
    batch_sizes = epoch_batch_sizes(sum(sizes), config.batch_size)
    steps_per_epoch = len(batch_sizes) - (1 if len(batch_sizes) > 1 and batch_sizes[-1] < world else 0)
    eval_points = _eval_points(steps_per_epoch, config.eval_every)
    optimizer = _optimizer(model, config, device)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    if config.compile_model:
        # The encoder is where the time goes; the heads pick rows by a data-dependent mask, which
        # would break the graph. Module.compile keeps the parameter names, so compiled and eager
        # runs share checkpoints.
        model.encoder.compile(dynamic=True)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    progress = load_checkpoint(accelerator, run) or Progress()
    if progress.best is not None and (problem := model_folder_problem(run.best_dir)):
        raise MtlvsiftError(f"The best model saved so far, {run.best_dir}, is damaged ({problem}). "
                            f"Rerun the same command with --restart to train this run from scratch.")
    if main:
        _trim_log(run, progress.step)

    mixed = accelerator.mixed_precision in ("fp16", "bf16")
    collate = make_collator(tokenizer, pad_to_multiple_of=8 if mixed else None)
    eval_batches = build_eval_batches(task_data, collate, config.eval_batch_size, rank, world)
    dataset = MixedTaskDataset([d.train for d in task_data])
    names = [d.task.name for d in task_data]
    title = f"{config.method} {config.name} seed {config.seed}"

    with TrainDisplay(main, title, total_steps, progress.step) as display:
        for epoch in range(progress.epoch, config.epochs):
            p = _epoch_probabilities(config, progress, sizes, epoch, names)
            schedule = _merge_small_tail(
                epoch_schedule(sizes, list(p.values()), config.batch_size, config.seed, epoch, config.batching or "heterogeneous"),
                world)
            local = [process_slice(b, rank, world) for b in schedule[progress.batch_in_epoch:]]
            loader = train_loader(dataset, local, micro_batch_collator(collate, config.grad_accum),
                                  config.num_workers, pin_memory=device.type == "cuda")
            running = _Running(len(names), device)
            tick = time.perf_counter()
            for batch_index, micro_batches in enumerate(loader, start=progress.batch_in_epoch):
                global_size = len(schedule[batch_index])
                loss, task_losses = _train_step(model, micro_batches, global_size, accelerator,
                                                optimizer, scheduler, config.max_grad_norm)
                running.add(loss, task_losses, global_size)
                progress.step += 1
                progress.batch_in_epoch = batch_index + 1
                progress.examples += global_size
                display.advance()
                fault_point("step")
                at_eval = progress.batch_in_epoch in eval_points
                if progress.step % config.log_every == 0 or at_eval:
                    elapsed = time.perf_counter() - tick
                    progress.train_seconds += elapsed
                    _log(config, accelerator, run, progress, running, names, elapsed, scheduler, display, p)
                    tick = time.perf_counter()
                if at_eval:
                    _evaluate_and_checkpoint(config, accelerator, run, model, tokenizer, task_data,
                                             eval_batches, progress, p, steps_per_epoch, display)
                    tick = time.perf_counter()
            progress.epoch, progress.batch_in_epoch = epoch + 1, 0

    record = build_record(config, progress, task_data, accelerator)
    if main:
        with _saving(run, "the run record"):
            atomic_write_json(run.result_file, record)
        fault_point("after_result")
        if not config.keep_state:
            shutil.rmtree(run.state_dir, ignore_errors=True)  # a finished run resumes nothing
        display.message(f"Done: {run.result_file}  best {record['best']['metric']} "
                        f"{100 * record['best']['score']:.2f} at epoch {record['best']['epoch']:.1f}")
    accelerator.wait_for_everyone()
    return record


def _eval_points(steps_per_epoch: int, eval_every: float) -> set[int]:
    """Batch counts within an epoch after which to evaluate: every ``eval_every`` and the end."""
    count = math.ceil(1 / eval_every - 1e-9)
    points = {min(steps_per_epoch, max(1, math.ceil(k * eval_every * steps_per_epoch - 1e-9)))
              for k in range(1, count + 1)}
    return points | {steps_per_epoch}


def _merge_small_tail(schedule: list[np.ndarray], world: int) -> list[np.ndarray]:
    # A last batch smaller than the process count would leave a process without rows.
    if len(schedule) > 1 and len(schedule[-1]) < world:
        schedule = schedule[:-2] + [np.concatenate(schedule[-2:])]
    return schedule


def _epoch_probabilities(config, progress: Progress, sizes, epoch: int, names) -> dict[str, float]:
    key = str(epoch)
    if key not in progress.probabilities:
        if len(sizes) == 1:
            p = [1.0]
        else:
            current = [progress.last_scores[n] for n in names] if progress.last_scores else None
            single = [config.single_scores[n] for n in names] if config.single_scores else None
            p = task_probabilities(config.sampling, sizes, epoch, single, current,
                                   config.dynamic_rule or "softmax").tolist()
        progress.probabilities[key] = [float(x) for x in p]
    return dict(zip(names, progress.probabilities[key]))


def _train_step(model, micro_batches, global_size, accelerator, optimizer, scheduler, max_grad_norm):
    """One optimizer step on this process's slice of a global batch of ``global_size`` examples.

    Each micro-batch's summed loss is scaled by W / global_size: DDP averages the W processes'
    gradients, so the step follows the mean loss over the whole global batch.
    """
    model.train()
    scale = accelerator.num_processes / global_size
    total, task_totals = 0.0, 0.0
    for i, batch in enumerate(micro_batches):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        last = i == len(micro_batches) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            loss, task_losses = model(**batch)
            accelerator.backward(loss * scale)
        total = total + loss.detach()
        task_totals = task_totals + task_losses.detach()
    if max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return total, task_totals


class _Running:
    """Loss sums kept on the device between log points (no host synchronisation per step)."""

    def __init__(self, num_tasks: int, device):
        self.sums = torch.zeros(num_tasks + 2, device=device, dtype=torch.float64)

    def add(self, loss, task_losses, global_size: int) -> None:
        self.sums[0] += loss
        self.sums[1] += global_size / 1.0  # counted once per process, divided out in _log
        self.sums[2:] += task_losses

    def take(self, accelerator) -> list[float]:
        values = accelerator.reduce(self.sums.clone(), "sum").tolist()
        values[1] /= accelerator.num_processes
        self.sums.zero_()
        return values


def _log(config, accelerator, run, progress, running, names, elapsed, scheduler, display, p) -> None:
    loss_sum, examples, *task_sums = running.take(accelerator)
    mean_loss = loss_sum / max(examples, 1)
    bad = [n for n, v in zip(names, task_sums) if not math.isfinite(v)]
    if bad or not math.isfinite(mean_loss):
        raise MtlvsiftError(
            f"The training loss became non-finite ({mean_loss}) by step {progress.step} "
            f"(epoch {progress.epoch + 1}), in task(s): {', '.join(bad) or 'unknown'}. The last good "
            f"checkpoint is kept in {run.state_dir}. Lower --lr or check the data, then rerun "
            f"(add --restart to start from scratch)."
        )
    speed = examples / elapsed if elapsed > 0 else 0.0
    display.status(mean_loss, speed, p)
    if accelerator.is_main_process:
        entry = {"step": progress.step, "epoch": progress.epoch + 1, "loss": mean_loss,
                 "lr": scheduler.get_last_lr()[0], "examples_per_second": speed}
        with open(run.log_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def _trim_log(run: RunFolder, step: int) -> None:
    """On resume, forget log lines written after the checkpoint (they will be written again)."""
    if not run.log_file.exists():
        return
    lines = [line for line in run.log_file.read_text().splitlines()
             if line.strip() and json.loads(line)["step"] <= step]
    run.log_file.write_text("".join(line + "\n" for line in lines))


def _evaluate_and_checkpoint(config, accelerator, run, model, tokenizer, task_data, eval_batches,
                             progress: Progress, p, steps_per_epoch, display) -> None:
    metrics = evaluate(model, accelerator, task_data, eval_batches)
    epoch = progress.epoch + progress.batch_in_epoch / steps_per_epoch
    entry = {"step": progress.step, "epoch": round(epoch, 6), "metrics": metrics, "probabilities": p}
    progress.history.append(entry)
    progress.last_scores = {d.task.name: metrics[d.task.name][d.task.main_metric] for d in task_data}
    improved_tasks = set()
    for data in task_data:
        candidate = selection_entry(entry, data.task.name)
        current = progress.best_by_task.get(data.task.name)
        if current is None or candidate["score"] > current["score"]:
            progress.best_by_task[data.task.name] = candidate
            improved_tasks.add(data.task.name)
    candidate = selection_entry(entry, config.target)
    if progress.best is None or candidate["score"] > progress.best["score"]:
        progress.best = candidate
        with _saving(run, "the best model"):
            save_best_model(accelerator, run, model, tokenizer)
    display.evaluation(progress.step, epoch, metrics, improved_tasks)
    with _saving(run, "the checkpoint"):
        save_checkpoint(accelerator, run, progress)


@contextmanager
def _saving(run: RunFolder, what: str):
    """A failed write (full disk, lost permissions) names what failed; the last good copies stay."""
    try:
        yield
    except OSError as exc:
        for tmp in (run.path / "state.tmp", run.path / "best.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)  # give back the space of the partial copy
        raise MtlvsiftError(
            f"Could not write {what} in {run.path}: {exc}. The previous checkpoint and best model "
            f"are intact; free space or fix permissions, then rerun the same command to resume."
        ) from exc

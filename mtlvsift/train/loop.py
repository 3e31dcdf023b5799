"""The one training loop of all three scripts (single/STILTs, pairwise MTL, MTL_All).

``run_training`` sets a run up: the accelerator, what the run needs from other runs
(``prerequisites``), the run folder (skip a finished run, refuse a changed config), the data, the
model, then the folder's lock. ``Trainer`` holds the wired-up pieces and trains: per epoch, task
probabilities p (dynamic sampling reads the last dev scores), the sampler's global batches for
(seed, epoch, p, protocol), each process training on its slice; the epoch settings, the LR
schedule's length and the evaluation points come from ``plan``, as a dry run shows them. Every ``eval_every`` of an epoch: evaluate
every task, keep the best model by the selection score, checkpoint. A rerun of the same command
resumes from the checkpoint; a completed run writes ``result.json``.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from contextlib import nullcontext
from typing import Any

import click
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point
from mtlvsift import run_record
from mtlvsift.run_folder import RunFolder, existing_folder
from mtlvsift.run_lock import RunLock
from mtlvsift.run_record import build_record, keep_if_best, selection_entry, selection_score, write_record
from mtlvsift.stop_signals import Stopped, exit_status, signal_label, stop_on_signals, stops_at_safe_points
from mtlvsift.train.evaluation.baseline import constant_baselines
from mtlvsift.train.batches.loader import MixedTaskDataset, micro_batch_collator, prepare_task_data, train_loader
from mtlvsift.train.checkpoint.state import Progress, load_checkpoint, state_misfit
from mtlvsift.train.checkpoint.writer import CheckpointWriter, check_saved_models
from mtlvsift.train.config import TrainConfig
from mtlvsift.train.evaluation.dev import build_eval_batches, evaluate
from mtlvsift.train.data.fingerprints import check_same_data, with_data_fingerprints
from mtlvsift.train.data.holdout import holdout_view, selection_split
from mtlvsift.train.model.multitask import (MultiTaskModel, is_model_folder, loss_weights, model_folder_problem,
                                            reuse_heads)
from mtlvsift.train.model.pretrained import (check_max_seq_length, check_tokenizer_reads, load_encoder,
                                             load_tokenizer, lowercase_tokenizer)
from mtlvsift.train.optimization import make_optimizer, make_scheduler
from mtlvsift.train.plan import (check_batch_options, epoch_settings, eval_points, first_epoch_layout,
                                 lr_schedule_steps, passes_per_epoch, with_prerequisites)
from mtlvsift.train.model.encoders import batch_collator, check_packing_options
from mtlvsift.train.progress_bar import TrainDisplay
from mtlvsift.train.run_messages import (exposure_line, few_steps_warning, interrupted_message,
                                         quiet_datasets_in_logs, quiet_transformers, resume_line, summary_lines)
from mtlvsift.train.batches.probabilities import task_probabilities
from mtlvsift.train.batches.sampling import epoch_schedule, process_slice, schedule_counts
from mtlvsift.train.trackers import Trackers, tracking_dir


def run_training(config: TrainConfig, restart: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip) the run that ``config`` describes; returns its record.

    Ctrl-C, SIGTERM, SIGHUP or SIGUSR1 end the run with one line (what was saved, how to resume)
    and exit status 128 + the signal's number (Ctrl-C 130, SIGTERM 143); by then the loop has
    completed the checkpoint write under way and released the folder's lock."""
    try:
        with quiet_transformers(), quiet_datasets_in_logs(), stop_on_signals():
            return _run_training(config, restart)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or a stop signal (stop_signals.Stopped)
        if int(os.environ.get("RANK", "0")) == 0:
            print(interrupted_message(config.run_dir, signal_label(interrupt)), file=sys.stderr, flush=True)
        raise click.exceptions.Exit(exit_status(interrupt)) from None  # click: "Aborted!", status 1


def _run_training(config: TrainConfig, restart: bool) -> dict[str, Any]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # Launched by torchrun on a machine without GPUs: DDP over gloo on the CPU.
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True),
                              log_with=config.report_to or None,
                              project_dir=str(tracking_dir(config.run_dir)))
    main = accelerator.is_main_process
    config = with_prerequisites(config)  # the single scores are part of the run's identity
    config = with_data_fingerprints(config)  # and so is the data
    run = RunFolder(config.run_dir)
    # --retrain-stale replaces a run that read another start model or other scores, nothing else.
    replace = config.overwrite or bool(config.retrain_stale and run.is_stale(config.identity()))
    if replace:
        RunLock(run.path).check_free()  # refused at once; claim() checks again as it locks
    else:
        check_same_data(run.stored_identity(), config)
        if run.prepare(config.identity()) == "complete":
            try:
                record = run_record.load(run.result_file)
            except run_record.InvalidRecord as exc:
                raise MtlvsiftError(f"{run.result_file} is {exc}. Pass --overwrite to train the "
                                    f"run again.") from None
            if main:  # a kill right after result.json was written may have cut the clean-up
                stored = record.get("config")
                kept = isinstance(stored, dict) and stored.get("keep_state") is True
                run.tidy_complete(keep_state=config.keep_state or kept)
                print(f"{run.path} is already complete (pass --overwrite to train it again).")
            return record

    set_seed(config.seed)
    check_max_seq_length(config.init_from or config.model, config.max_seq_length)
    original = config.protocol == "original"
    option = "--init-from" if config.init_from else "--model"  # the option errors name
    tokenizer = load_tokenizer(config.init_from or config.model, option)
    if original:
        tokenizer = lowercase_tokenizer(tokenizer)
    task_data = prepare_task_data(config, tokenizer, accelerator.main_process_first)
    check_tokenizer_reads(tokenizer, [d.train for d in task_data])
    # An epoch the protocol cannot form (original: a task smaller than its quota) fails here.
    check_batch_options(config, [len(d.train) for d in task_data], accelerator.num_processes)
    # A supporting run's best/ must be whole; --init-from may also be a plain Hugging Face folder.
    if config.init_model and (config.init_from is None or is_model_folder(config.init_model)):
        problem = model_folder_problem(config.init_model)
        if problem:
            raise MtlvsiftError(
                f"The model to start from, {config.init_model}, is damaged or missing ({problem}). "
                f"Train that run again (its command with --overwrite) or pass --init-from another "
                f"model folder.")
    encoder = load_encoder(config.init_model or config.model, option)
    model = MultiTaskModel(encoder, [d.task.name for d in task_data],
                           [d.task.num_labels for d in task_data], share_heads=original)
    if original and config.init_model and is_model_folder(config.init_model):
        reuse_heads(model, config.init_model)
    check_packing_options(config, accelerator.device, accelerator.mixed_precision)
    # Everything that can fail on the user's input has been checked: now the folder is claimed.
    lock = run.claim(config.identity(), replace, restart) if main else None
    accelerator.wait_for_everyone()
    try:
        return Trainer(config, accelerator, run, model, tokenizer, task_data).train()
    finally:
        if lock is not None:
            lock.release()


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
        self.epoch_length = 0  # batches in the epoch under way (the original's vary by epoch)
        total_steps = lr_schedule_steps(config, self.sizes, accelerator.num_processes)
        optimizer = make_optimizer(model, config, device)
        self.progress = Progress()  # replaced by the checkpoint's, if any (the LR below reads it)
        scheduler = make_scheduler(optimizer, config, len(self.sizes), total_steps,
                                   lambda: self.progress.epoch_batches)
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
        self.progress = load_checkpoint(accelerator, run, self.model, self.optimizer, self.scheduler,
                                        config.epochs, self.names) or Progress()
        self.checkpoints = CheckpointWriter(accelerator, run, self.model, self.optimizer, self.scheduler,
                                            tokenizer)
        check_saved_models(run, self.progress)
        if self.main:
            run.trim_log(self.progress.step)
        self.eval_batches = build_eval_batches(task_data, self.collate, config.eval_batch_size,
                                               accelerator.process_index, accelerator.num_processes)
        self.holdout = None  # (its tasks' data, its batches): the held-out part, evaluated as dev is
        if config.select_on == "holdout":
            view = holdout_view(task_data)
            self.holdout = view, build_eval_batches(view, self.collate, config.eval_batch_size,
                                                    accelerator.process_index, accelerator.num_processes)
        self.dataset = MixedTaskDataset([d.train for d in task_data])
        self.running = _Running(len(self.names), device)
        self.rows_since_log = np.zeros(len(self.names), dtype=np.int64)  # each task's, for the log
        title = f"{config.method} {config.name} seed {config.seed}"
        self.display = TrainDisplay(self.main, title, total_steps, self.progress.step)
        self.trackers = Trackers(accelerator, config)  # --report-to; nothing without it
        # What a constant prediction scores on each dev set, to read every evaluation against.
        self.baselines = constant_baselines(task_data) if self.main else None
        self.total_steps = total_steps

    def announce(self) -> None:
        """The start-up summary, a warning for a run too short to learn, where a resumed run goes on."""
        config, steps = self.config, self.total_steps
        batches = len(first_epoch_layout(config, self.sizes, self.accelerator.num_processes).batch_sizes)
        evaluations = config.epochs * len(eval_points(batches, config.eval_every))
        lines = summary_lines(config, self.task_data, batches, steps, evaluations, self.device_facts())
        world = self.accelerator.num_processes
        lines += [exposure_line(self.names, passes_per_epoch(config, self.sizes, world)),
                  few_steps_warning(steps, config.epochs, batches, config.batch_size),
                  resume_line(self.progress)]
        for line in filter(None, lines):
            self.display.message(line)

    def device_facts(self) -> dict[str, Any]:
        accelerator = self.accelerator
        return {"device": str(accelerator.device), "num_processes": accelerator.num_processes,
                "mixed_precision": accelerator.mixed_precision, "packed_batches": self.packed}

    def train(self) -> dict[str, Any]:
        self.announce()
        try:
            with self.display, stops_at_safe_points():  # a stop signal ends the step under way first
                for epoch in range(self.progress.epoch, self.config.epochs):
                    self.train_epoch(epoch)
            return self.finish()
        finally:
            self.checkpoints.close()  # a run stopped by an error still completes the write under way
            self.trackers.end()

    def train_epoch(self, epoch: int) -> None:
        config, progress = self.config, self.progress
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        p = self.epoch_probabilities(epoch)
        schedule = epoch_schedule(self.sizes, list(p.values()), config.batch_size, config.seed,
                                  epoch, num_processes=world, **epoch_settings(config))
        recorded = progress.epoch_batches.get(str(epoch))  # a resumed epoch's, from progress.json
        if recorded is not None and recorded != len(schedule):
            raise state_misfit(self.run.state_dir, f"epoch {epoch} has {len(schedule)} batches, not {recorded}")
        self.epoch_length = len(schedule)
        progress.epoch_batches[str(epoch)] = len(schedule)
        progress.epoch_rows[str(epoch)] = schedule_counts(schedule, len(self.names)).tolist()
        points = eval_points(len(schedule), config.eval_every)
        local = [process_slice(b, rank, world) for b in schedule[progress.batch_in_epoch:]]
        loader = train_loader(self.dataset, local, micro_batch_collator(self.collate, config.grad_accum),
                              config.num_workers, pin_memory=self.accelerator.device.type == "cuda")
        if progress.batch_in_epoch in points and (progress.history or [{}])[-1].get("step") != progress.step:
            self.evaluate_and_checkpoint(p)  # a stop during this step's evaluation: done now
        tick = time.perf_counter()
        for batch_index, micro_batches in enumerate(loader, start=progress.batch_in_epoch):
            global_size = len(schedule[batch_index])
            task_rows = np.bincount(schedule[batch_index][:, 0], minlength=len(self.names))
            self.step(micro_batches, task_rows)
            self.rows_since_log += task_rows
            progress.step += 1
            progress.batch_in_epoch = batch_index + 1
            progress.examples += global_size
            self.display.advance()
            fault_point("step")
            at_eval = progress.batch_in_epoch in points
            at_log = progress.step % config.log_every == 0 or at_eval
            if at_log:
                elapsed = time.perf_counter() - tick
                progress.train_seconds += elapsed
                self.log(elapsed, p)
                tick = time.perf_counter()
            if at_eval:
                try:
                    self.evaluate_and_checkpoint(p)
                except Stopped:  # between dev batches: the rerun evaluates this step first
                    self.checkpoints.checkpoint_at_stop(progress)
                    raise
                tick = time.perf_counter()
            self.checkpoints.stop_if_asked(progress, at_log, at_eval)
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
                                       config.dynamic_rule or "softmax", config.temperature).tolist()
            progress.probabilities[key] = [float(x) for x in p]
        return dict(zip(self.names, progress.probabilities[key]))

    def step(self, micro_batches: list[dict], task_rows: np.ndarray) -> None:
        """One optimizer step on this process's slice of a global batch (``task_rows`` per task).

        Each micro-batch's per-task summed losses are weighted by ``loss_weights`` (scaled by W:
        DDP averages the W processes' gradients), so the step follows the objective over the
        whole global batch: its mean loss, or (original protocol) the sum of the task means.
        """
        accelerator, model = self.accelerator, self.model
        model.train()
        weights = torch.tensor(loss_weights(task_rows.tolist(), accelerator.num_processes,
                                            per_task_mean=self.config.protocol == "original"),
                               device=accelerator.device)
        for i, batch in enumerate(micro_batches):
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            last = i == len(micro_batches) - 1
            with nullcontext() if last else accelerator.no_sync(model):
                loss, task_losses = model(**batch)
                accelerator.backward((task_losses * weights).sum())
            self.running.add(loss.detach(), task_losses.detach())
        self.running.count(int(task_rows.sum()))
        if self.config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), self.config.max_grad_norm)
        self.checkpoints.before_optimizer_step(self.progress)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def epoch_position(self) -> float:
        """Epochs trained so far, as a fraction (1.5: half of the second epoch): what the log
        and the history record as ``epoch``."""
        progress = self.progress
        return round(progress.epoch + progress.batch_in_epoch / self.epoch_length, 6)

    def log(self, elapsed: float, p: dict[str, float]) -> None:
        """Mean loss since the last log (one host sync), checked finite, shown and appended."""
        progress = self.progress
        loss_sum, examples, *task_sums = self.running.take(self.accelerator)
        mean_loss = loss_sum / max(examples, 1)
        bad = [n for n, v in zip(self.names, task_sums) if not math.isfinite(v)]
        if bad or not math.isfinite(mean_loss):
            self.checkpoints.close()  # a write under way finishes: it is the last good checkpoint
            kept = (f"The last good checkpoint is kept in {self.run.state_dir}."
                    if existing_folder(self.run.state_dir) else "No checkpoint had been written yet.")
            raise MtlvsiftError(
                f"The training loss became non-finite ({mean_loss}) by step {progress.step} "
                f"(epoch {progress.epoch + 1}), in task(s): {', '.join(bad) or 'unknown'}. {kept} "
                f"Lower --lr or check the data, then rerun (add --restart to start from scratch)."
            )
        speed = examples / elapsed if elapsed > 0 else 0.0
        lr = self.scheduler.get_last_lr()[0]
        self.display.status(mean_loss, speed, p)
        self.trackers.train(progress.step, mean_loss, lr, speed, p)
        if self.main:
            self.run.append_log({"step": progress.step, "epoch": self.epoch_position(),
                                 "loss": mean_loss, "lr": lr, "examples_per_second": speed,
                                 "task_rows": dict(zip(self.names, self.rows_since_log.tolist()))})
        self.rows_since_log[:] = 0

    def evaluate_and_checkpoint(self, p: dict[str, float]) -> None:
        progress = self.progress
        start = time.perf_counter()
        metrics = evaluate(self.model, self.accelerator, self.task_data, self.eval_batches)
        entry = {"step": progress.step, "epoch": self.epoch_position(), "metrics": metrics, "probabilities": p}
        if self.holdout is not None:  # --select-on holdout: selected there, dev reported
            entry["selection_metrics"] = evaluate(self.model, self.accelerator, *self.holdout)
        progress.eval_seconds.append(time.perf_counter() - start)
        progress.history.append(entry)
        # Dynamic sampling's current scores are those of the selection split.
        progress.last_scores = {n: selection_score(selection_entry(entry, n)) for n in self.names}
        is_best, improved = keep_if_best(progress, entry, self.names, self.config.target)
        self.display.evaluation(progress.step, entry["epoch"], metrics, improved, self.baselines or {})
        self.trackers.evaluation(progress.step, metrics)
        self.checkpoints.checkpoint(progress, best=is_best, improved=improved)
        previous = f"; the previous write took {progress.save_seconds[-2]:.2f} s" \
            if len(progress.save_seconds) > 1 else ""
        self.display.message(f"Checkpoint at step {progress.step}: the loop waited "
                             f"{progress.checkpoint_blocked_seconds[-1]:.2f} s, the write goes on in "
                             f"the background{previous}.")

    def finish(self) -> dict[str, Any]:
        """Write the run record; a finished run keeps no resume state (unless --keep-state)."""
        accelerator, run = self.accelerator, self.run
        self.checkpoints.finish(self.progress)
        record = build_record(self.config.as_dict(), self.progress,
                              {d.task.name: len(d.train) for d in self.task_data},
                              {d.task.name: d.available for d in self.task_data}, self.device_facts(),
                              baselines=self.baselines, selection=selection_split(self.config, self.task_data))
        if self.main:
            with run.saving("the run record"):
                write_record(run.result_file, record)
            fault_point("after_result")
            if not self.config.keep_state:
                shutil.rmtree(run.state_dir, ignore_errors=True)
            best = record.best
            self.display.message(f"Done: {run.result_file}  best {best['metric']} "
                                 f"{100 * best['score']:.2f} at epoch {best['epoch']:.1f}")
        accelerator.wait_for_everyone()
        return record.to_json()


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

"""The baseline of the GPU benchmark: ``transformers.Trainer`` on the very examples the project's
loop trains on, in the paper's settings (fp16, padding to 128, ``adamw_torch``, no loader workers)
or with its best flags (bf16, dynamic padding, ``adamw_torch_fused``, 4 loader workers)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from bench import measure
from bench.loop_runner import MAX_SEQ_LENGTH, loop_config, reset_accelerate

if TYPE_CHECKING:
    from bench.gpu_train import Case, Settings


def run_trainer(case: Case, s: Settings, params: int) -> dict[str, Any]:
    """transformers.Trainer on the loop's own examples of the task, timed after a warm-up."""
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainerCallback, TrainingArguments, set_seed)

    from mtlvsift.train.batches.loader import prepare_task_data
    from mtlvsift.train.model.pretrained import load_tokenizer

    reset_accelerate()
    cuda = s.device == "cuda"
    paper = case.trainer == "paper"
    config = loop_config(case.tasks, s.model_dir, s.data_dir, s.work_dir / "out", s.examples, s.batch_size)
    tokenizer = load_tokenizer(str(s.model_dir))
    (data,) = prepare_task_data(config, tokenizer, nullcontext)

    def for_trainer(dataset):
        keep = dataset.select_columns(["input_ids", "attention_mask", "label"])
        return keep.map(lambda b: {"labels": [int(x) for x in b["label"]]}, batched=True,
                        remove_columns=["label"])

    train, dev = for_trainer(data.train), for_trainer(data.dev["dev"])
    warmup = min(s.log_every, s.steps - 1)  # as the loop's first log interval, left out

    class Clock(TrainerCallback):
        start = end = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, args.max_steps):
                measure.sync()
                if state.global_step == warmup:
                    self.start = time.perf_counter()
                else:
                    self.end = time.perf_counter()

    precision = ("fp16" if paper else "bf16") if cuda else "no"
    optimizer, workers = ("adamw_torch", 0) if paper else ("adamw_torch_fused", 4)
    args = TrainingArguments(
        output_dir=str(s.work_dir / "trainer" / case.name), per_device_train_batch_size=s.batch_size,
        per_device_eval_batch_size=s.batch_size, learning_rate=2e-5, weight_decay=0.0,
        max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=0, max_steps=s.steps, seed=0,
        fp16=precision == "fp16", bf16=precision == "bf16", use_cpu=not cuda,
        optim=optimizer, dataloader_num_workers=workers, dataloader_pin_memory=cuda,
        dataloader_drop_last=True,  # every timed step is a full batch of B examples
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none",
        disable_tqdm=True)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(s.model_dir),
                                                               num_labels=data.task.num_labels)
    collator = (DataCollatorWithPadding(tokenizer, padding="max_length", max_length=MAX_SEQ_LENGTH)
                if paper else DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8))
    clock = Clock()
    trainer = Trainer(model=model, args=args, data_collator=collator, train_dataset=train,
                      eval_dataset=dev, processing_class=tokenizer, callbacks=[clock],
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1)
                                                                    == p.label_ids).mean())})
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    eval_seconds = []
    for _ in range(2):  # the first call warms up; the second is the one reported
        began = time.perf_counter()
        scores = trainer.evaluate()
        eval_seconds.append(time.perf_counter() - began)
    wall = time.perf_counter() - start
    reset_accelerate()  # the Trainer's accelerate state must not outlive it
    rate = (s.steps - warmup) * s.batch_size / (clock.end - clock.start)
    eval_rate = len(dev) / measure.steady_eval_seconds(eval_seconds)
    train_tokens, eval_tokens = measure.mean_tokens([data.train]), measure.mean_tokens([data.dev["dev"]])
    # The Trainer's batches are random: pad an epoch of seeded random batches the way it does.
    order = np.random.default_rng(0).permutation(len(train))[: len(train) // s.batch_size * s.batch_size]
    batches = [np.stack([np.zeros_like(b), b], axis=1) for b in order.reshape(-1, s.batch_size)]
    padded = (MAX_SEQ_LENGTH if paper else
              measure.padded_tokens([measure.token_lengths(data.train)], batches, 8))
    return {
        "name": case.name, "kind": "trainer", "tasks": list(case.tasks), "compile": False,
        "precision": precision, "device": s.device, "batch_size": s.batch_size,
        "padding": "max_length 128" if paper else "dynamic (multiple of 8)",
        "optimizer": optimizer, "loader_workers": workers,
        "train_sizes": {data.task.name: len(train)}, "steps": s.steps, "timed_steps": s.steps - warmup,
        "train_examples_per_s": rate, "eval_examples": len(dev), "eval_seconds": eval_seconds,
        "eval_examples_per_s": eval_rate,
        "train_tokens_per_example": train_tokens, "eval_tokens_per_example": eval_tokens,
        "train_padded_tokens_per_example": padded,
        "train_tflops": measure.tflops(6, params, train_tokens, rate),
        "eval_tflops": measure.tflops(2, params, eval_tokens, eval_rate),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "wall_seconds": wall, "dev_scores": [scores.get("eval_accuracy")], "dev_metric": "accuracy",
    }

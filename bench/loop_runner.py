"""One run of the project's loop (``mtlvsift.train.loop.run_training``, the train scripts' code
path) for a benchmark configuration, measured from what the loop itself writes to its run folder:

- ``result.json``'s ``timing``: ``train_seconds``, ``eval_seconds`` (one per evaluation),
  ``save_seconds`` (one per evaluation: writing checkpoint + best model, in the background),
  ``checkpoint_blocked_seconds`` (one per evaluation: the loop's wait for it), ``examples``,
  ``examples_per_second``, ``steps``, ``device``, ``num_processes``, ``mixed_precision``,
  ``packed_batches``;
- ``train_log.jsonl``: per log interval ``step`` and ``examples_per_second`` (time between log
  points, evaluation and saving left out).

Nothing inside mtlvsift is patched or wrapped: a refactor of the loop that keeps those fields
keeps the benchmark working.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bench import measure
from mtlvsift import run_record
from mtlvsift.run_folder import RESULT_FILE

BATCH_SIZE = 128  # the paper's
MAX_SEQ_LENGTH = 128
TIMING_KEYS = ("train_seconds", "eval_seconds", "save_seconds", "checkpoint_blocked_seconds", "examples",
               "examples_per_second", "steps", "device", "num_processes", "mixed_precision",
               "packed_batches")


def plan_size(sizes: Sequence[int], examples: int) -> tuple[int | None, int]:
    """(--max-train-examples, --epochs) so that a run trains about ``examples`` examples: whole
    epochs over small sets, else one epoch over every task capped at the same size."""
    total = sum(sizes)
    if total <= examples:
        return None, max(1, math.ceil(examples / total))
    low, high = 1, max(sizes)  # the largest cap whose capped total fits
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in sizes) <= examples:
            low = mid
        else:
            high = mid - 1
    return low, 1


def loop_config(tasks: Sequence[str], model_dir: Path, data_dir: Path, output_dir: Path,
                examples: int, batch_size: int = BATCH_SIZE, compile_model: bool = False,
                eval_every: float | None = None, log_every: int = 10, num_workers: int = 0,
                seed: int = 0, packing: bool = True, varlen_attention: bool = False):
    """The TrainConfig a train script would build: single-task for one task, else pairwise MTL
    (size sampling, heterogeneous batches: no single runs needed). By default two evaluations in
    a one-epoch run, else one per epoch (each evaluation also writes a checkpoint)."""
    from mtlvsift.tasks import get_task
    from mtlvsift.train.config import mtl_config, stilts_config
    from mtlvsift.train.data.glue import load_split

    cap, epochs = plan_size([len(load_split(get_task(t), "train", data_dir)) for t in tasks], examples)
    eval_every = eval_every or (0.5 if epochs == 1 else 1.0)
    options = dict(model=str(model_dir), seed=seed, epochs=epochs, lr=2e-5, batch_size=batch_size,
                   grad_accum=1, max_seq_length=MAX_SEQ_LENGTH, eval_every=eval_every,
                   eval_batch_size=256, data_dir=str(data_dir), output_dir=str(output_dir),
                   max_train_examples=cap, data_seed=0, log_every=log_every,
                   num_workers=num_workers, overwrite=True, compile_model=compile_model,
                   packing=packing, varlen_attention=varlen_attention)
    if len(tasks) == 1:
        return stilts_config(tasks[0], None, options)
    return mtl_config(tasks[0], tuple(tasks[1:]), {**options, "sampling": "size"})


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state so that the next run may use other settings."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@contextmanager
def accelerate_environment(device: str, precision: str) -> Iterator[None]:
    """The variables `accelerate launch` would set, read when the loop makes its Accelerator:
    the mixed precision, and the CPU off CUDA. The previous values come back afterwards."""
    values = {"ACCELERATE_MIXED_PRECISION": precision}
    if device != "cuda":
        values["ACCELERATE_USE_CPU"] = "true"
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run record (result.json) and the training log (train_log.jsonl) of a finished run."""
    record = run_record.load(run_dir / RESULT_FILE)
    missing = [key for key in TIMING_KEYS if key not in record.get("timing", {})]
    if missing:
        raise KeyError(f"{run_dir / 'result.json'}: record['timing'] lacks {', '.join(missing)}; "
                       "the benchmark reads the loop's own timings from there")
    lines = (run_dir / "train_log.jsonl").read_text().splitlines()
    return record, [json.loads(line) for line in lines if line.strip()]


def run_loop(name: str, config, device: str, precision: str, params: int) -> dict[str, Any]:
    """One run of ``run_training`` with ``config``, measured: rates, tokens, FLOP/s, memory."""
    import torch

    from mtlvsift.tasks import get_task
    from mtlvsift.train.loop import run_training
    from mtlvsift.train.evaluation.metrics import load_glue_metric

    cuda = device == "cuda"
    for task in config.tasks:  # evaluate.load is once per process: keep it out of the first evaluation
        load_glue_metric(get_task(task))
    reset_accelerate()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with accelerate_environment(device, precision):
        run_training(config)
    wall = time.perf_counter() - start
    reset_accelerate()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    record, log = read_run(config.run_dir)
    timing = record["timing"]
    precision = timing["mixed_precision"]  # what the loop ran under
    eval_seconds, save_seconds = timing["eval_seconds"], timing["save_seconds"]
    blocked = timing["checkpoint_blocked_seconds"]
    target = config.target
    metric = get_task(target).main_metric
    result = {
        "name": name, "kind": "loop", "tasks": list(config.tasks), "compile": config.compile_model,
        "precision": precision, "device": device, "loop_device": timing["device"],
        "packing": timing["packed_batches"], "varlen_attention": config.varlen_attention,
        "batch_size": config.batch_size, "train_sizes": record["train_sizes"], "epochs": config.epochs,
        "steps": timing["steps"], "eval_every": config.eval_every, "evaluations": len(eval_seconds),
        "train_examples_per_s_whole_run": timing["examples_per_second"],
        "eval_seconds": eval_seconds, "save_seconds": save_seconds, "checkpoint_blocked_seconds": blocked,
        # What checkpoints cost the loop per evaluation: its wait (the write runs in the background).
        "checkpoint_seconds_per_eval": sum(blocked) / len(blocked) if blocked else None,
        "checkpoint_write_seconds_per_eval": sum(save_seconds) / len(save_seconds) if save_seconds else None,
        "peak_memory_gib": peak, "wall_seconds": wall,
        "dev_scores": [h["metrics"][target][metric] for h in record["history"]],
        "dev_metric": f"{target}.{metric}",
    }
    return result | token_rates(config, record, log, precision, params)


def token_rates(config, record: dict[str, Any], log: list[dict[str, Any]], precision: str,
                params: int) -> dict[str, Any]:
    """Steady train and eval examples/s, real and padded tokens per example, useful FLOP/s of a
    finished run (its data is tokenized again from the cache, as the loop saw it)."""
    from accelerate.utils import set_seed

    from mtlvsift.train.batches.loader import prepare_task_data
    from mtlvsift.train.model.pretrained import load_tokenizer
    from mtlvsift.train.batches.sampling import epoch_batch_sizes

    set_seed(0)
    data = prepare_task_data(config, load_tokenizer(config.model), nullcontext)
    train_tokens = measure.mean_tokens([d.train for d in data])
    padding = measure.loop_padding(config, data, measure.collator_multiple(precision))
    computed = measure.computed_tokens(padding, record["timing"]["packed_batches"], config.compile_model)
    dev_sets = [ds for d in data for ds in d.dev.values()]
    eval_tokens, eval_examples = measure.mean_tokens(dev_sets), sum(len(ds) for ds in dev_sets)
    sizes = epoch_batch_sizes(sum(record["train_sizes"].values()), config.batch_size,
                              num_processes=record["timing"]["num_processes"])
    rate = measure.steady_train_rate(log, sizes)
    eval_seconds = measure.steady_eval_seconds(record["timing"]["eval_seconds"])
    eval_rate = eval_examples / eval_seconds if eval_seconds else None
    return {
        "train_examples_per_s": rate, "eval_examples": eval_examples, "eval_examples_per_s": eval_rate,
        "train_tokens_per_example": train_tokens, "eval_tokens_per_example": eval_tokens,
        "train_padded_tokens_per_example": padding["1"], "train_computed_tokens_per_example": computed,
        "train_computed_per_real_token": computed / padding["packed"],  # same batches: epoch 0
        "train_attention_blocks_per_real_token": padding["blocks"] / padding["packed"],
        "padded_tokens_if_sorted_micro_batches": {k: padding[k] for k in ("2", "4")},
        "train_tflops": measure.tflops(6, params, train_tokens, rate),
        "eval_tflops": measure.tflops(2, params, eval_tokens, eval_rate),
    }

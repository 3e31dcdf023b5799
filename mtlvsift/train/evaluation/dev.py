"""Dev-set evaluation: length-sorted batches collated once, shared out over the processes.

Each process runs every W-th batch; predictions are gathered, the main process computes the
metrics with the ``evaluate`` module and broadcasts them, so every process makes the same
best-model decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object

from mtlvsift.stop_signals import stop_point
from mtlvsift.train.batches.loader import TaskData
from mtlvsift.train.evaluation.metrics import compute_task_metrics, logits_to_predictions


@dataclass
class EvalBatch:
    task_index: int
    split: str
    positions: np.ndarray  # row numbers in the dev split
    inputs: dict[str, torch.Tensor]


def build_eval_batches(task_data: list[TaskData], collate: Callable, batch_size: int,
                       process_index: int, num_processes: int) -> list[EvalBatch]:
    """This process's share of every dev split, padded once for the whole run."""
    batches, k = [], 0
    for task_index, data in enumerate(task_data):
        for split, dataset in data.dev.items():
            for positions in length_sorted_batches(dataset["length"], batch_size):
                if k % num_processes == process_index:
                    rows = dataset[positions.tolist()]
                    features = [{key: rows[key][j] for key in rows if key != "length"} | {"task_id": task_index}
                                for j in range(len(positions))]
                    inputs = collate(features)
                    inputs.pop("labels")
                    batches.append(EvalBatch(task_index, split, positions, dict(inputs)))
                k += 1
    return batches


def evaluate(model, accelerator: Accelerator, task_data: list[TaskData],
             batches: list[EvalBatch]) -> dict[str, dict[str, float]]:
    """Metrics of every task on its dev splits: ``{task: {metric: value}}``."""
    was_training = model.training
    model.eval()
    network = accelerator.unwrap_model(model)  # no DDP communication needed for inference
    local = []
    with torch.inference_mode():
        for batch in batches:
            if accelerator.num_processes == 1:  # several agree where to stop: at a log point (loop.py)
                stop_point()  # a stop signal need not wait for a long dev set (the rerun evaluates)
            inputs = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.inputs.items()}
            local.append((batch.task_index, batch.split, batch.positions, network(**inputs).float()))
    # One copy to the host at the end, not a synchronisation per batch.
    local = [(t, s, p, logits.cpu().numpy()) for t, s, p, logits in local]
    model.train(was_training)
    everything = gather_object(local) if accelerator.num_processes > 1 else local
    results = [None]
    if accelerator.is_main_process:
        results = [_metrics(task_data, everything)]
    if accelerator.num_processes > 1:
        broadcast_object_list(results)
    return results[0]


def _metrics(task_data: list[TaskData], outputs: list) -> dict[str, dict[str, float]]:
    metrics = {}
    for task_index, data in enumerate(task_data):
        per_split = {}
        for split, dataset in data.dev.items():
            predictions = np.empty(len(dataset), dtype=np.float64)
            for index, out_split, positions, logits in outputs:
                if index == task_index and out_split == split:
                    predictions[positions] = logits_to_predictions(data.task, logits)
            references = np.asarray(dataset["label"])
            if not data.task.is_regression:
                predictions, references = predictions.astype(np.int64), references.astype(np.int64)
            per_split[split] = (predictions, references)
        metrics[data.task.name] = compute_task_metrics(data.task, per_split)
    return metrics


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Evaluation batches of indices, longest first, so each batch pads little."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return np.array_split(order, range(batch_size, len(order), batch_size)) if len(order) else []

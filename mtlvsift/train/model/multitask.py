"""A shared pre-trained encoder with one head per task, saved and loaded as one folder.

The encoder runs once over a whole (possibly mixed-task) batch; each head then reads the rows of
its own task. The model returns each task's summed loss; ``loss_weights`` turns them into the
step's objective: the mean over the global batch (every example counts once, so each task's
weight is set by how often it is sampled), or, under ``--protocol original``, the sum of the
per-task means. The original also shared heads by label count (``head_of_task``).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedTokenizerBase

from mtlvsift.train.batches.packing import PackedLayout, mark_budgeted_shapes
from mtlvsift.train.model.encoders import model_inputs, packed_hidden_states
from mtlvsift.train.model.pretrained import ENCODER_DIR, load_encoder, load_tokenizer

HEADS_FILE = "heads.pt"
HEADS_CONFIG = "heads.json"


class TaskHead(nn.Module):
    """The RoBERTa-style classification head over the first token: dropout, dense+tanh, dropout, out."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.dense(self.dropout(first_token)))
        return self.out_proj(self.dropout(hidden))


def head_of_task(num_labels: list[int], share_by_label_count: bool = False) -> list[int]:
    """Each task's head: its own, or (the original code) one head per label count, in order of
    first appearance, so that e.g. RTE and QNLI train the same binary classifier."""
    if not share_by_label_count:
        return list(range(len(num_labels)))
    counts = list(dict.fromkeys(num_labels))
    return [counts.index(n) for n in num_labels]


def loss_weights(task_rows: list[int], num_processes: int = 1, per_task_mean: bool = False) -> list[float]:
    """The weight of each task's summed loss in a global batch's objective.

    Mean over the batch: W / rows; ``per_task_mean`` (the original code): W / rows of the task,
    0 for an absent task, so the objective is the sum of the present tasks' means. W, the
    process count, undoes DDP's averaging of the processes' gradients.
    """
    if per_task_mean:
        return [num_processes / n if n else 0.0 for n in task_rows]
    return [num_processes / sum(task_rows)] * len(task_rows)


def first_token_states(encoder: nn.Module, input_ids: torch.Tensor,
                       attention_mask: torch.Tensor | None = None,
                       token_type_ids: torch.Tensor | None = None,
                       position_ids: torch.Tensor | None = None,
                       packed_layout: PackedLayout | None = None,
                       budgeted_shapes: bool = False) -> torch.Tensor:
    """Each row's first-token state, what the heads read: of padded rows (B, L), or of rows
    packed into one sequence (1, T) whose ``packed_layout`` says where each row lies (see
    packing.py)."""
    extra = model_inputs(encoder, token_type_ids=token_type_ids, position_ids=position_ids)
    if packed_layout is None:
        output = encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return output.last_hidden_state[:, 0]
    if budgeted_shapes:
        mark_budgeted_shapes({"input_ids": input_ids, **extra}, packed_layout)
    return packed_hidden_states(encoder, input_ids, packed_layout, **extra)[0, packed_layout.first_token]


class MultiTaskModel(nn.Module):
    """A shared encoder and a head per task (a task's index is its position in ``task_names``);
    ``share_heads`` gives tasks with the same label count one head (``head_of_task``)."""

    def __init__(self, encoder: nn.Module, task_names: list[str], num_labels: list[int],
                 share_heads: bool = False):
        super().__init__()
        self.encoder = encoder
        self.task_names = list(task_names)
        self.num_labels = list(num_labels)
        self.share_heads = share_heads
        self.head_of_task = head_of_task(self.num_labels, share_heads)
        config = encoder.config
        dropout = getattr(config, "hidden_dropout_prob", 0.1)
        first_task = [self.head_of_task.index(h) for h in range(max(self.head_of_task) + 1)]
        self.heads = nn.ModuleList(TaskHead(config.hidden_size, self.num_labels[t], dropout)
                                   for t in first_task)
        self.budgeted_shapes = False  # packed batches under --compile: see packing.mark_budgeted_shapes

    def encode(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None,
               packed_layout: PackedLayout | None = None) -> torch.Tensor:
        """Each row's first-token state (``first_token_states``)."""
        return first_token_states(self.encoder, input_ids, attention_mask, token_type_ids,
                                  position_ids, packed_layout, self.budgeted_shapes)

    def forward(self, input_ids, attention_mask=None, task_ids=None, labels=None, token_type_ids=None,
                position_ids=None, packed_layout: PackedLayout | None = None):
        """Summed loss over the batch (and per task), or the logits of a one-task batch.

        Returns ``(loss_sum, task_loss_sums)`` when labels are given: every head runs, on an
        empty slice when its task is absent, so under DDP every parameter takes part in every step.
        """
        first_token = self.encode(input_ids, attention_mask, token_type_ids, position_ids, packed_layout)
        if labels is None:
            return self.heads[self.head_of_task[int(task_ids[0])]](first_token)
        task_losses = []
        for index, head_index in enumerate(self.head_of_task):
            rows = task_ids == index
            logits = self.heads[head_index](first_token[rows]).float()
            if self.num_labels[index] == 1:
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels[rows], reduction="sum")
            else:
                loss = nn.functional.cross_entropy(logits, labels[rows].long(), reduction="sum")
            task_losses.append(loss)
        losses = torch.stack(task_losses)
        return losses.sum(), losses

    # --- one folder: encoder/ (save_pretrained) + tokenizer + heads ---
    def save(self, folder: str | Path, tokenizer: PreTrainedTokenizerBase,
             state: dict[str, torch.Tensor] | None = None) -> None:
        """``state``: this model's state dict to write instead of its live weights (a copy taken
        earlier, so that a background thread can write it while training goes on)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state_dict() if state is None else state
        self.encoder.save_pretrained(folder / ENCODER_DIR, state_dict=_part(state, "encoder."))
        tokenizer.save_pretrained(folder / ENCODER_DIR)
        torch.save(_part(state, "heads."), folder / HEADS_FILE)
        heads = {"task_names": self.task_names, "num_labels": self.num_labels,
                 "share_heads": self.share_heads}
        (folder / HEADS_CONFIG).write_text(json.dumps(heads, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> tuple["MultiTaskModel", PreTrainedTokenizerBase]:
        folder = Path(folder)
        heads = json.loads((folder / HEADS_CONFIG).read_text())
        encoder, tokenizer = load_encoder(str(folder)), load_tokenizer(str(folder))
        model = cls(encoder, heads["task_names"], heads["num_labels"], heads.get("share_heads", False))
        state = torch.load(folder / HEADS_FILE, map_location="cpu", weights_only=True)
        model.heads.load_state_dict(state)
        return model, tokenizer


def reuse_heads(model: MultiTaskModel, folder: str | Path) -> list[str]:
    """Start each head of ``model`` from the saved model's head of the same label count, as the
    original STILTs did (its model kept one head per label count from one stage to the next).
    Returns the tasks whose head was reused."""
    folder = Path(folder)
    saved = json.loads((folder / HEADS_CONFIG).read_text())
    state = torch.load(folder / HEADS_FILE, map_location="cpu", weights_only=True)
    saved_heads = head_of_task(saved["num_labels"], saved.get("share_heads", False))
    by_count: dict[int, int] = {}
    for task_index, count in enumerate(saved["num_labels"]):
        by_count.setdefault(count, saved_heads[task_index])
    reused = []
    for task_index, count in enumerate(model.num_labels):
        if count in by_count:
            prefix = f"{by_count[count]}."
            head = model.heads[model.head_of_task[task_index]]
            head.load_state_dict(_part(state, prefix))
            reused.append(model.task_names[task_index])
    return reused


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def model_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why a saved model folder cannot be loaded (reading every tensor), or None when it is whole."""
    from safetensors import safe_open

    folder = Path(folder)
    try:
        heads = json.loads((folder / HEADS_CONFIG).read_text())
        state = torch.load(folder / HEADS_FILE, map_location="cpu", weights_only=True)
        problem = heads_problem(heads, state)
        if problem:
            return f"{folder / HEADS_CONFIG} {problem}"
        AutoConfig.from_pretrained(folder / ENCODER_DIR)
        weights = sorted((folder / ENCODER_DIR).glob("*.safetensors"))
        if not weights:
            return f"no weights in {folder / ENCODER_DIR}"
        for file in weights:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_tensor(key)
    except pickle.UnpicklingError:  # torch.load(weights_only=True) refused it: nothing was run
        return f"{folder / HEADS_FILE} holds objects other than tensors and numbers, so it is not loaded"
    except Exception as exc:  # truncated or corrupt files of any kind
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"
    return None


def heads_problem(heads: object, state: object) -> str | None:
    """Why ``heads.json`` (``heads``) does not describe the saved heads (``state``), or None:
    task names, label counts and each head's output size must agree."""
    if not isinstance(heads, dict):
        return "is not an object of task_names, num_labels and share_heads"
    names, counts = heads.get("task_names"), heads.get("num_labels")
    share = heads.get("share_heads", False)
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        return "has no list of task names (task_names)"
    if not (isinstance(counts, list) and len(counts) == len(names) and isinstance(share, bool)
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts)):
        return f"has no label count (num_labels) for each of its {len(names)} task(s)"
    if not isinstance(state, dict):
        return f"does not match {HEADS_FILE}, which holds no heads"
    for task, (count, head) in enumerate(zip(counts, head_of_task(counts, share))):
        weight = state.get(f"{head}.out_proj.weight")
        if not isinstance(weight, torch.Tensor) or weight.shape[0] != count:
            found = "no head" if not isinstance(weight, torch.Tensor) else f"{weight.shape[0]} outputs"
            return (f"gives task {names[task]} {count} label(s), but its head in {HEADS_FILE} has "
                    f"{found}")
    return None


def is_model_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / HEADS_CONFIG).is_file() and (folder / ENCODER_DIR / "config.json").is_file()

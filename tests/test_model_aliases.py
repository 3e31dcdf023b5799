"""Short names of the common checkpoints: resolved to hub ids where a model is loaded, their
maximum lengths checked as any model's, and a run's folder and identity kept as typed."""

from __future__ import annotations

import huggingface_hub
import pytest

import mtlvsift.train.model.pretrained as pretrained
from helpers import glue_sized_folder, plan_json
from mtlvsift.errors import MtlvsiftError

HUB_IDS = {"modernbert-base": "answerdotai/ModernBERT-base", "deberta-v3-base": "microsoft/deberta-v3-base",
           "electra-base": "google/electra-base-discriminator", "bert-base": "google-bert/bert-base-uncased",
           "roberta-base": "FacebookAI/roberta-base", "distilroberta-base": "distilbert/distilroberta-base"}


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    """No name in the hub cache, no folder of an alias's name in the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, filename: None)


def test_each_alias_resolves_to_its_hub_id(empty_hub_cache):
    assert pretrained.HUB_ALIASES == HUB_IDS
    assert {name: pretrained.resolve_model_path(name) for name in HUB_IDS} == HUB_IDS
    assert pretrained.resolve_model_path("org/other-model") == "org/other-model"


def test_a_folder_or_a_cached_download_of_the_name_itself_wins(empty_hub_cache, tmp_path, monkeypatch):
    (tmp_path / "bert-base").mkdir()
    assert pretrained.resolve_model_path("bert-base") == "bert-base"
    cached = {"distilroberta-base": "/cache/models--distilroberta-base/snapshots/x/config.json"}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, filename: cached.get(repo))
    assert pretrained.resolve_model_path("distilroberta-base") == "distilroberta-base"  # offline as before
    assert pretrained.resolve_model_path("roberta-base") == "FacebookAI/roberta-base"


def test_an_alias_has_its_checkpoints_maximum_length(empty_hub_cache, monkeypatch):
    from transformers import ModernBertConfig, RobertaConfig

    configs = {"FacebookAI/roberta-base": RobertaConfig(max_position_embeddings=514, pad_token_id=1),
               "answerdotai/ModernBERT-base": ModernBertConfig(max_position_embeddings=8192)}
    asked = []

    def from_pretrained(path):
        asked.append(path)
        return configs[path]

    monkeypatch.setattr(pretrained.AutoConfig, "from_pretrained", from_pretrained)
    pretrained.check_max_seq_length("roberta-base", 512)
    with pytest.raises(MtlvsiftError, match="--max-seq-length 513 is longer than roberta-base can read: "
                                            "its position embeddings end at 512 tokens"):
        pretrained.check_max_seq_length("roberta-base", 513)
    pretrained.check_max_seq_length("modernbert-base", 8192)
    assert asked == ["FacebookAI/roberta-base"] * 2 + ["answerdotai/ModernBERT-base"]


def test_an_unloadable_alias_names_its_hub_id(empty_hub_cache):
    error = pretrained._model_error("electra-base", OSError("offline"), "--model")
    assert str(error).startswith("--model electra-base (google/electra-base-discriminator) is neither")


def test_the_default_models_runs_keep_their_folder_and_identity(tmp_path):
    """`distilroberta-base` is today's default: its runs' folders and records name it as typed."""
    glue_sized_folder(tmp_path / "glue")
    for typed in (None, "distilroberta-base"):
        plan = plan_json("train_stilts", tmp_path / "out", "--target", "rte",
                         *(["--model", typed] if typed else []))
        assert plan["model"] == "distilroberta-base"
        assert plan["run_dir"] == str(tmp_path / "out" / "distilroberta-base" / "single" / "rte" / "seed-0")


def test_an_fp16_checkpoint_trains_in_fp32(tiny_model, tmp_path):
    import torch
    from transformers import AutoModel

    half = tmp_path / "fp16"
    AutoModel.from_pretrained(tiny_model).half().save_pretrained(half)  # as the GPU bundle's MiniLM
    assert {p.dtype for p in AutoModel.from_pretrained(half).parameters()} == {torch.float16}
    assert {p.dtype for p in pretrained.load_encoder(str(half)).parameters()} == {torch.float32}

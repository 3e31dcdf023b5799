"""The tokenization cache (train/data/tokenized.py): keys, races between processes, damaged or
swapped entries."""

from __future__ import annotations

import os
import shutil

import pytest

from helpers import RTE_HEADER, write
from mtlvsift.train.data import tokenized
from mtlvsift.train.data.tokenized import load_tokenized
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import get_task


def test_tokenized_cache_hit_and_keys(tmp_path, rte_dir, tokenizer, monkeypatch):
    task = get_task("rte")
    calls = []
    original = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    first = load_tokenized(task, "train", tokenizer, 128, rte_dir, cache_dir=tmp_path / "c")
    assert calls and set(first.column_names) == {
        "input_ids", "attention_mask", "token_type_ids", "label", "length"}
    assert first["label"] == [0.0, 1.0, 0.0]
    assert first["length"] == [len(ids) for ids in first["input_ids"]]
    assert first[0]["input_ids"][0] == tokenizer.cls_token_id  # a pair, no padding
    calls.clear()
    second = load_tokenized(task, "train", tokenizer, 128, rte_dir, cache_dir=tmp_path / "c")
    assert not calls and second.to_dict() == first.to_dict()
    short = load_tokenized(task, "train", tokenizer, 6, rte_dir, cache_dir=tmp_path / "c")
    assert calls and max(short["length"]) == 6
    # A changed file gets its own key too.
    (rte_dir / "RTE" / "train.tsv").write_text(RTE_HEADER + "0\tnew\ttext\tentailment\n")
    load_tokenized(task, "train", tokenizer, 128, rte_dir, cache_dir=tmp_path / "c")
    assert len(os.listdir(tmp_path / "c" / "tokenized")) == 3


def test_tokenized_default_cache_dir_from_env(tmp_path, rte_dir, tokenizer, monkeypatch):
    monkeypatch.setenv("MTLVSIFT_CACHE_DIR", str(tmp_path / "env"))
    load_tokenized(get_task("rte"), "train", tokenizer, 32, rte_dir)
    assert len(os.listdir(tmp_path / "env" / "tokenized")) == 1


def test_tokenized_race_keeps_the_first_folder(tmp_path, rte_dir, tokenizer, monkeypatch):
    original = tokenized._tokenize

    def other_process_wins(ds, task, split, tok, max_len, key):
        result = original(ds, task, split, tok, max_len, key)
        result.save_to_disk(str(tmp_path / "c" / "tokenized" / key))  # finished meanwhile
        return result

    monkeypatch.setattr(tokenized, "_tokenize", other_process_wins)
    ds = load_tokenized(get_task("rte"), "train", tokenizer, 64, rte_dir, cache_dir=tmp_path / "c")
    assert len(ds) == 3
    assert len(os.listdir(tmp_path / "c" / "tokenized")) == 1  # our temporary folder is gone


def test_a_swapped_or_zeroed_cache_entry_is_rebuilt_with_a_notice(tmp_path, rte_dir, tokenizer, capsys):
    task, cache = get_task("rte"), tmp_path / "c"
    train = load_tokenized(task, "train", tokenizer, 64, rte_dir, cache_dir=cache).to_dict()
    [train_entry] = (cache / "tokenized").iterdir()
    write(rte_dir / "RTE" / "dev.tsv", RTE_HEADER + "0\tother\ttext\tnot_entailment\n")
    dev = load_tokenized(task, "dev", tokenizer, 64, rte_dir, cache_dir=cache).to_dict()
    [dev_entry] = set((cache / "tokenized").iterdir()) - {train_entry}
    capsys.readouterr()
    # The dev split's entry moved in under the train split's key.
    shutil.rmtree(train_entry)
    shutil.copytree(dev_entry, train_entry)
    assert load_tokenized(task, "train", tokenizer, 64, rte_dir, cache_dir=cache).to_dict() == train
    assert f"The tokenization cache entry {train_entry} holds the entry of another key: tokenizing " \
           "RTE train again." in capsys.readouterr().out
    # Zeroed bytes in an entry's arrays.
    arrays = next(dev_entry.glob("*.arrow"))
    arrays.write_bytes(bytes(arrays.stat().st_size))
    assert load_tokenized(task, "dev", tokenizer, 64, rte_dir, cache_dir=cache).to_dict() == dev
    assert "has files that changed since they were written" in capsys.readouterr().out
    assert load_tokenized(task, "dev", tokenizer, 64, rte_dir, cache_dir=cache).to_dict() == dev
    assert capsys.readouterr().out == ""  # rebuilt whole: no notice the next time
    assert sorted(p.name for p in (cache / "tokenized").iterdir()) == sorted([train_entry.name, dev_entry.name])


def test_a_stray_file_named_like_a_cache_entry_is_named_as_such(tmp_path, rte_dir, tokenizer):
    task, cache = get_task("rte"), tmp_path / "c"
    load_tokenized(task, "train", tokenizer, 64, rte_dir, cache_dir=cache)
    entry = next((cache / "tokenized").iterdir())
    shutil.rmtree(entry)
    entry.write_text("not a cache entry")
    with pytest.raises(MtlvsiftError, match="is a file where the tokenization cache keeps the folder "
                                            r"of a tokenized split \(RTE train\)") as info:
        load_tokenized(task, "train", tokenizer, 64, rte_dir, cache_dir=cache)
    assert str(entry) in info.value.message and "MTLVSIFT_CACHE_DIR" not in info.value.message

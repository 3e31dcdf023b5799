"""recommend's feature cache: a second embedding of the same rows by the same model files is read
back (the encoder is not even loaded), a retrained model or other settings embed anew, and a
hostile or damaged cache file is never unpickled, only replaced."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

from mtlvsift.recommend import feature_cache, features
from mtlvsift.tasks import get_task


@pytest.fixture
def model(tiny_model, tmp_path):
    return str(shutil.copytree(tiny_model, tmp_path / "model"))  # its files' times are the test's


def embed(model, tiny_glue, **options):
    return features.target_features(model, get_task("rte"), tiny_glue, 30, 64, **options)


def cached_files():
    root = feature_cache.cache_root() / "features"
    return sorted(root.glob("*.npz")) if root.is_dir() else []


def test_the_second_embedding_is_read_back_without_the_encoder(model, tiny_glue, monkeypatch):
    first = embed(model, tiny_glue)
    assert not first.cached and len(cached_files()) == 1

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder was loaded for a cached embedding")

    monkeypatch.setattr(features, "load_encoder", no_encoder)
    second = embed(model, tiny_glue)
    assert second.cached
    assert np.array_equal(second.features, first.features)
    assert np.array_equal(second.labels, first.labels)


def test_a_retrained_model_or_other_settings_embed_anew(model, tiny_glue):
    embed(model, tiny_glue)
    weights = next(p for p in os.scandir(model) if p.name.endswith(".safetensors"))
    stat = os.stat(weights.path)
    os.utime(weights.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten best/
    assert not embed(model, tiny_glue).cached
    assert not embed(model, tiny_glue, mixed_precision="bf16").cached
    assert not embed(model, tiny_glue, packing=False).cached
    assert len(cached_files()) == 4
    assert embed(model, tiny_glue, packing=False).cached


def test_use_cache_false_neither_reads_nor_writes(model, tiny_glue):
    assert not embed(model, tiny_glue, use_cache=False).cached
    assert cached_files() == []


@pytest.mark.parametrize("content", [
    b"not an npz at all",
    pickle.dumps({"features": "boom"}),
    "object",  # an npz whose arrays need pickle
    "wrong shape",
    "nan",
])
def test_a_bad_cache_file_is_replaced_never_unpickled(model, tiny_glue, content):
    good = embed(model, tiny_glue)
    [path] = cached_files()
    if content == "object":
        np.savez(path.with_suffix(""), features=np.array([object()] * 3, dtype=object),
                 labels=good.labels)
    elif content == "wrong shape":
        np.savez(path.with_suffix(""), features=good.features[:5], labels=good.labels)
    elif content == "nan":
        np.savez(path.with_suffix(""), features=np.full_like(good.features, np.nan),
                 labels=good.labels)
    else:
        path.write_bytes(content)
    again = embed(model, tiny_glue)
    assert not again.cached and np.allclose(again.features, good.features, atol=1e-6)
    assert embed(model, tiny_glue).cached  # the file was replaced by a good one


def test_a_model_that_is_not_on_disk_is_not_cached():
    assert feature_cache.model_files_fingerprint("no-such-org/no-such-model") is None

"""Files a run folder holds are untrusted: a planted pickle under any name a loader could pick, beside
what a resume, predict.py, STILTs and compare.py read, is never unpickled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import fails, folder_of, run_script, stop_after_first_checkpoint, tiny_args

# Every name a loader of a pickle-format file could pick: transformers' and accelerate's
# checkpoint files, torch's usual suffixes, and mtlvsift's own two (where they are not real).
PICKLE_NAMES = ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt",
                "scheduler.bin", "rng_state.pth", "random_states_0.pkl", "scaler.pt", "model.pt",
                "heads.pt", "training.pt", "model.safetensors")


class _Planted:
    """What a planted checkpoint holds: an object whose unpickling creates ``marker`` (it could as
    well run any command)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant(file: Path, marker: Path) -> None:
    torch.save({"payload": _Planted(marker)}, file)


@pytest.mark.parametrize("planted", ["state/training.pt", "best/heads.pt", "best/encoder/pytorch_model.bin"])
def test_a_planted_pickle_in_the_run_being_resumed_runs_nothing(planted, tiny_model, tiny_glue, tmp_path,
                                                                monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    marker = tmp_path / "ran"
    _plant(folder_of(tmp_path) / planted, marker)
    args = ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    if planted.endswith(".bin"):  # never read: the weights are the safetensors beside it
        run_script("train_stilts", args)
    else:
        fails("train_stilts", args, "objects other than tensors", "--restart")
    assert not marker.exists()


def test_a_planted_pickle_in_a_best_model_runs_nothing_in_predict_or_stilts(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    marker = tmp_path / "ran"
    _plant(folder_of(tmp_path, name="sst2") / "best" / "heads.pt", marker)
    fails("predict", ["--run", folder_of(tmp_path, name="sst2"), "--split", "dev", "--out", tmp_path / "p",
                      "--data-dir", tiny_glue], "objects other than tensors")
    fails("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                           *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "sst2/seed-0/best", "objects other than tensors", "--overwrite")
    assert not marker.exists() and not (tmp_path / "p").exists()


def _plant_everywhere(run_folder: Path, marker: Path) -> list[Path]:
    """A payload under each of PICKLE_NAMES not taken, in the run folder, its state/, best/,
    best/encoder/ and every tokenization cache entry: what a resume, predict.py, STILTs and
    compare.py could read beside the files they mean to."""
    cache = Path(os.environ["MTLVSIFT_CACHE_DIR"]) / "tokenized"
    folders = [run_folder, run_folder / "state", run_folder / "best", run_folder / "best" / "encoder",
               *(entry for entry in cache.iterdir() if entry.is_dir())]
    planted = [folder / name for folder in folders if folder.is_dir() for name in PICKLE_NAMES
               if not (folder / name).exists()]
    for file in planted:
        _plant(file, marker)
    return planted


def test_the_planted_payload_runs_when_unpickled(tmp_path):
    """The control for the tests below: a plain unpickling of a planted file creates the marker."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "optimizer.pt", marker)
    torch.load(tmp_path / "optimizer.pt", weights_only=False)
    assert marker.exists()


def test_no_planted_pickle_beside_the_files_a_resume_reads_is_loaded(tiny_model, tiny_glue, tmp_path,
                                                                     monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    marker = tmp_path / "ran"
    assert len(_plant_everywhere(folder_of(tmp_path), marker)) > 40
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert not marker.exists()


@pytest.mark.parametrize("planted, expected", [
    ("state/model.safetensors", "The saved state in"),
    ("best/encoder/model.safetensors", "The best model saved so far")])
def test_a_pickle_in_place_of_the_safetensors_being_resumed_is_damage(planted, expected, tiny_model, tiny_glue,
                                                                      tmp_path, monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    marker = tmp_path / "ran"
    _plant(folder_of(tmp_path) / planted, marker)
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          expected, "damaged", "--restart")
    assert not marker.exists()


def test_no_planted_pickle_beside_a_best_model_is_loaded_by_predict_stilts_or_compare(tiny_model, tiny_glue,
                                                                                    tmp_path):
    """predict.py and STILTs read the run's best/ (and the cache), compare.py the records: each
    works as if the payloads were not there, and none is unpickled."""
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    marker = tmp_path / "ran"
    supporting = folder_of(tmp_path, name="sst2")
    _plant_everywhere(supporting, marker)
    run_script("predict", ["--run", supporting, "--split", "dev", "--out", tmp_path / "p", "--data-dir", tiny_glue])
    run_script("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                                *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    _plant_everywhere(folder_of(tmp_path, "stilts", "rte--sst2"), marker)
    run_script("compare", ["--outputs", tmp_path, "--report-dir", tmp_path / "report"])
    assert not marker.exists()


@pytest.mark.parametrize("remove_safetensors", [False, True])
def test_a_pickle_as_the_start_models_weights_is_refused(remove_safetensors, tiny_model, tiny_glue, tmp_path):
    """best/encoder/model.safetensors replaced by a pickle, or removed with a pytorch_model.bin
    planted beside it (which transformers would fall back to): both refused as damaged, by
    predict.py and by STILTs, and nothing is unpickled."""
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    marker = tmp_path / "ran"
    encoder = folder_of(tmp_path, name="sst2") / "best" / "encoder"
    if remove_safetensors:
        (encoder / "model.safetensors").unlink()
    _plant(encoder / ("pytorch_model.bin" if remove_safetensors else "model.safetensors"), marker)
    fails("predict", ["--run", folder_of(tmp_path, name="sst2"), "--split", "dev", "--out", tmp_path / "p",
                      "--data-dir", tiny_glue], "cannot be loaded")
    fails("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                           *tiny_args(tiny_model, tiny_glue, tmp_path)], "sst2/seed-0/best", "damaged")
    assert not marker.exists() and not (tmp_path / "p").exists()

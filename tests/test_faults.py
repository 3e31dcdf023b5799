"""Faults: kills at any moment, damaged state, non-finite loss, two writers, full disk, reruns."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import mtlvsift.faults as faults
from helpers import fails, read_result, run_script, run_subprocess, tiny_args


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    faults._hits.clear()
    yield
    faults._hits.clear()


def folder_of(out, method="single", name="rte"):
    return out / method / name / "seed-0"


def stop_after_first_checkpoint(tiny_model, tiny_glue, out, monkeypatch, *extra):
    """Run in-process until the first checkpoint is written, then fail as a full disk would."""
    monkeypatch.setenv("MTLVSIFT_FAULT", "after_checkpoint:oserror:1")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out), *extra],
          "Could not write the checkpoint")
    monkeypatch.delenv("MTLVSIFT_FAULT")
    faults._hits.clear()
    progress = json.loads((folder_of(out) / "state" / "progress.json").read_text())
    assert progress["step"] == 3


@pytest.mark.slow
def test_kill_at_ten_random_moments(tiny_model, tiny_glue, tmp_path):
    """SIGKILL at 10 random moments (mid-step, mid-checkpoint, mid-write of a file or the best
    model); rerunning the command each time ends exactly like an uninterrupted run."""
    args = ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, tmp_path / "clean", epochs=3)]
    assert run_subprocess(args).returncode == 0
    points = ["step", "mid_checkpoint", "after_checkpoint", "mid_best", "mid_write"]
    rng = random.Random(1234)
    resumed_args = [a if a != tmp_path / "clean" else tmp_path / "killed" for a in args]
    kills = 0
    for attempt in range(10):
        fault = f"{rng.choice(points)}:{rng.randint(1, 4)}"
        done = run_subprocess(resumed_args, fault)
        assert done.returncode in (0, -9), done.stderr[-2000:]
        kills += done.returncode == -9
        if done.returncode == 0:
            break
    assert kills >= 5
    assert run_subprocess(resumed_args).returncode == 0
    clean, killed = folder_of(tmp_path / "clean"), folder_of(tmp_path / "killed")
    a, b = load_file(clean / "state" / "model.safetensors"), load_file(killed / "state" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    best_a = load_file(clean / "best" / "encoder" / "model.safetensors")
    best_b = load_file(killed / "best" / "encoder" / "model.safetensors")
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    ra, rb = read_result(tmp_path / "clean", "single", "rte"), read_result(tmp_path / "killed", "single", "rte")
    assert ra["history"] == rb["history"] and ra["best"] == rb["best"]
    assert not list(killed.parent.glob("seed-0/*.tmp*")) and not list(killed.glob(".*.tmp-*"))


@pytest.mark.parametrize("damage", ["truncate_weights", "corrupt_progress"])
def test_damaged_state_says_restart(damage, tiny_model, tiny_glue, tmp_path, monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    state = folder_of(tmp_path) / "state"
    if damage == "truncate_weights":
        weights = state / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (state / "progress.json").write_text('{"step": 3, "epo')
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "is damaged", "--restart")
    run_script("train_stilts", ["--target", "rte", "--restart", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert len(read_result(tmp_path, "single", "rte")["history"]) == 4


def test_damaged_best_model_says_restart(tiny_model, tiny_glue, tmp_path, monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    weights = folder_of(tmp_path) / "best" / "encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "best model saved so far", "is damaged", "--restart")


def test_damaged_supporting_model_is_named(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    (folder_of(tmp_path, name="sst2") / "best" / "heads.pt").write_bytes(b"not a checkpoint")
    fails("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                           *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "sst2/seed-0/best", "is damaged", "--overwrite")
    assert not (tmp_path / "stilts").exists()


def test_non_finite_loss_stops_with_step_and_task(tiny_model, tiny_glue, tmp_path, monkeypatch):
    from mtlvsift.train.model import MultiTaskModel

    real_forward = MultiTaskModel.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        output = real_forward(self, *args, **kwargs)
        if kwargs.get("labels") is None:
            return output
        calls["n"] += 1
        if calls["n"] < 8:
            return output
        _, task_losses = output
        task_losses = task_losses * torch.tensor([1.0, float("nan")])
        return task_losses.sum(), task_losses

    monkeypatch.setattr(MultiTaskModel, "forward", poisoned)
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size", "--log-every", 1,
                        *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "non-finite", "step 8", "sst2", "last good checkpoint")
    folder = folder_of(tmp_path, "mtl", "rte--sst2__sampling-size")
    assert json.loads((folder / "state" / "progress.json").read_text())["step"] == 6
    assert not (folder / "result.json").exists()


def test_second_writer_is_refused_and_stale_lock_taken_over(tiny_model, tiny_glue, tmp_path):
    folder = folder_of(tmp_path)
    folder.mkdir(parents=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "run.lock").write_text(str(owner.pid))
        fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
              str(folder), "in use by process", str(owner.pid))
    finally:
        owner.kill()
        owner.wait()
    # The owner is dead now: its lock is stale and the next run takes it over.
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert (folder / "result.json").exists() and not (folder / "run.lock").exists()


def test_disk_full_while_saving_the_first_best_model(tiny_model, tiny_glue, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLVSIFT_FAULT", "mid_best:oserror:1")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "Could not write the best model", "No space left on device")
    folder = folder_of(tmp_path)
    assert not (folder / "best.tmp").exists() and not (folder / "best").exists()
    assert not (folder / "state").exists() and (folder / "config.json").exists()
    monkeypatch.delenv("MTLVSIFT_FAULT")
    faults._hits.clear()
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert len(read_result(tmp_path, "single", "rte")["history"]) == 4


@pytest.mark.parametrize("point", ["mid_checkpoint:oserror:1", "mid_write:oserror:2"])
def test_disk_full_keeps_the_previous_checkpoint(point, tiny_model, tiny_glue, tmp_path, monkeypatch):
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    folder = folder_of(tmp_path)
    before = {p.name: p.read_bytes() for p in (folder / "state").iterdir()}
    monkeypatch.setenv("MTLVSIFT_FAULT", point)
    result = fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
                   "Could not write", "No space left on device", "rerun the same command")
    monkeypatch.delenv("MTLVSIFT_FAULT")
    assert {p.name: p.read_bytes() for p in (folder / "state").iterdir()} == before, result
    assert not (folder / "state.tmp").exists() and not (folder / "best.tmp").exists()
    assert (folder / "best" / "heads.json").exists() and not (folder / "result.json").exists()
    faults._hits.clear()
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert len(read_result(tmp_path, "single", "rte")["history"]) == 4


def test_compare_lists_unfinished_runs(tiny_model, tiny_glue, tmp_path, monkeypatch):
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    result = run_script("compare", ["--outputs", tmp_path, "--report-dir", tmp_path / "report"])
    text = " ".join(result.output.split())
    assert "in progress" in text.lower() and "single/rte/seed-0" in text


def test_same_command_twice_gives_the_same_record(tiny_model, tiny_glue, tmp_path):
    for name in ("a", "b"):
        run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                                 *tiny_args(tiny_model, tiny_glue, tmp_path / name)])
    ra, rb = (read_result(tmp_path / n, "mtl", "rte--sst2__sampling-size") for n in ("a", "b"))
    assert ra["history"] == rb["history"] and ra["best"] == rb["best"]
    assert ra["best_by_task"] == rb["best_by_task"]

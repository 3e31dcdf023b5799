"""Checkpoints written in the background: host copies, a slow write, a failed last write, DDP.

The kill-and-resume and full-disk tests of test_faults.py and test_train.py cover the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import mtlvsift.faults as faults
import mtlvsift.train.checkpoint.writer as checkpoint_writer
from helpers import (model_dir, REPO_ROOT, fails, read_log, read_result, run_script, stopped_at_a_checkpoint_then_resumed,
                     tiny_args)
from mtlvsift.train.checkpoint.writer import HostCopy


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    faults._hits.clear()
    yield
    faults._hits.clear()


def test_host_copy_reuses_its_buffers_and_owns_its_values():
    weights = torch.arange(6.0).reshape(2, 3)
    state = {"model": {"w": weights}, "optimizer": {"state": {0: {"step": torch.tensor(3.0)}},
                                                    "param_groups": [{"lr": 0.1, "params": [0]}]}}
    copy = HostCopy(pin=False)
    first = copy(state)
    weights += 100  # training goes on after the copy
    assert first["model"]["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert first["optimizer"]["param_groups"] == [{"lr": 0.1, "params": [0]}]
    second = copy(state)
    assert second["model"]["w"] is first["model"]["w"]  # the same buffer: no new allocation
    assert second["model"]["w"][0, 0] == 100.0 and second["optimizer"]["state"][0]["step"] == 3.0


@pytest.fixture
def slow_background(monkeypatch):
    """The background copy and the write each take 0.3 s longer: the loop trains on meanwhile."""
    real_copy, real_write = checkpoint_writer.CheckpointWriter._copy, checkpoint_writer.write_state

    def slow_copy(self, *args):
        time.sleep(0.3)
        real_copy(self, *args)

    def slow_write(*args):
        time.sleep(0.3)
        real_write(*args)

    monkeypatch.setattr(checkpoint_writer.CheckpointWriter, "_copy", slow_copy)
    monkeypatch.setattr(checkpoint_writer, "write_state", slow_write)


def test_a_slow_write_is_waited_for_before_the_record(tiny_model, tiny_glue, tmp_path, slow_background):
    """The run still ends with the last checkpoint on disk before result.json, and the record
    holds each write's time and the loop's waits."""
    run_script("train_stilts", ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert json.loads((folder / "state" / "progress.json").read_text())["step"] == 12
    timing = read_result(tmp_path, "single", "rte")["timing"]
    assert len(timing["save_seconds"]) == len(timing["checkpoint_blocked_seconds"]) == 4
    assert all(seconds >= 0.6 for seconds in timing["save_seconds"])
    assert not list(folder.glob("*.tmp"))


def test_a_slow_copy_still_holds_the_checkpoint_step(tiny_model, tiny_glue, tmp_path, monkeypatch,
                                                     slow_background):
    """The copy runs while the next step computes: the optimizer waits for it, so a run resumed
    from the first checkpoint (step 3) ends exactly like an uninterrupted one."""
    def command(out):
        return ["--target", "rte", "--keep-state", "--log-every", 1, *tiny_args(tiny_model, tiny_glue, out)]

    run_script("train_stilts", command(tmp_path / "clean"))
    stopped_at_a_checkpoint_then_resumed(monkeypatch, "train_stilts", command(tmp_path / "resumed"),
                                         "after_checkpoint:oserror:1")
    clean, resumed = (model_dir(tmp_path / n, tiny_model) / "single" / "rte" / "seed-0" for n in ("clean", "resumed"))
    a, b = (load_file(folder / "state" / "model.safetensors") for folder in (clean, resumed))
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert read_log(clean) == [e | {"examples_per_second": c["examples_per_second"]}
                               for e, c in zip(read_log(resumed), read_log(clean))]


def test_a_failed_last_write_stops_the_run_before_its_record(tiny_model, tiny_glue, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLVSIFT_FAULT", "mid_checkpoint:oserror:4")  # the fourth and last checkpoint
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "Could not write the checkpoint", "No space left on device", "rerun the same command")
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert not (folder / "result.json").exists() and not (folder / "state.tmp").exists()
    assert json.loads((folder / "state" / "progress.json").read_text())["step"] == 9
    monkeypatch.delenv("MTLVSIFT_FAULT")
    faults._hits.clear()
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert len(read_result(tmp_path, "single", "rte")["history"]) == 4


def test_resuming_with_another_process_count_is_refused(tiny_model, tiny_glue, tmp_path, monkeypatch):
    monkeypatch.setenv("MTLVSIFT_FAULT", "after_checkpoint:oserror:1")
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "Could not write the checkpoint")
    monkeypatch.delenv("MTLVSIFT_FAULT")
    training = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0" / "state" / "training.pt"
    state = torch.load(training, weights_only=False)
    torch.save(state | {"rng": state["rng"] * 2}, training)  # as two processes write it
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "was written by 2 process(es)", "--restart")


@pytest.mark.slow
def test_a_failed_write_stops_every_process(tiny_model, tiny_glue, tmp_path):
    """Under DDP only the main process writes; its failure stops both processes with the error."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", MTLVSIFT_FAULT="mid_checkpoint:oserror:1")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO_ROOT / "launch_configs" / "cpu_multi_process.yaml"), "--num_processes", "2",
               str(REPO_ROOT / "scripts" / "train_stilts.py"), "--target", "rte",
               *map(str, tiny_args(tiny_model, tiny_glue, tmp_path))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    output = " ".join((done.stdout + done.stderr).split())
    assert output.count("Could not write the checkpoint") >= 2, output[-3000:]  # both processes
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    assert not (folder / "state").exists() and not (folder / "result.json").exists()


# --- each task's own best model (issue 25) -------------------------------------------------------

def test_which_task_best_folders_a_checkpoint_writes_and_removes():
    from mtlvsift.train.checkpoint.state import Progress
    from mtlvsift.train.checkpoint.writer import task_best_changes

    progress = Progress()
    progress.best = {"step": 6}
    progress.best_by_task = {"rte": {"step": 6}, "sst2": {"step": 3}}
    assert task_best_changes(progress, {"sst2"}) == (("sst2",), ("rte",))
    assert task_best_changes(progress, set()) == ((), ("rte",))  # best-sst2/ stays as it is
    progress.best, progress.best_by_task = {"step": 9}, {"rte": {"step": 9}, "sst2": {"step": 9}}
    assert task_best_changes(progress, {"rte", "sst2"}) == ((), ("rte", "sst2"))


def test_a_run_folder_recovers_and_restarts_task_best_folders(tmp_path):
    from mtlvsift.run_folder import RunFolder

    run = RunFolder(tmp_path)
    for name in ("best", "best-sst2.old", "best-cola.tmp", "best-rte"):
        (tmp_path / name).mkdir()
    run.recover()  # a swap cut between its renames is completed, a partial copy removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "best-rte", "best-sst2"]
    run.discard_progress()
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_mtl_run_keeps_the_same_task_best_models(tiny_model, tiny_glue, tmp_path, monkeypatch):
    def args(out):
        return ["--target", "rte", "--support", "sst2", "--sampling", "size",
                *tiny_args(tiny_model, tiny_glue, out, "--lr", 3e-3, epochs=2)]

    run_script("train_mtl", args(tmp_path / "clean"))
    stopped_at_a_checkpoint_then_resumed(monkeypatch, "train_mtl", args(tmp_path / "resumed"),
                                         "after_checkpoint:oserror:2")
    clean, resumed = (read_result(tmp_path / k, "mtl", "rte--sst2__sampling-size") for k in ("clean", "resumed"))
    assert clean["best_by_task"] == resumed["best_by_task"] and clean["best"] == resumed["best"]
    assert clean["best"]["step"] != clean["best_by_task"]["sst2"]["step"]
    from helpers import run_dir

    folders = [run_dir(tmp_path / k, "mtl", "rte--sst2__sampling-size") for k in ("clean", "resumed")]
    assert [sorted(p.name for p in f.glob("best*")) for f in folders] == [["best", "best-sst2"]] * 2
    weights = [load_file(f / "best-sst2" / "encoder" / "model.safetensors") for f in folders]
    assert all(torch.allclose(weights[0][k], weights[1][k], atol=1e-6) for k in weights[0])

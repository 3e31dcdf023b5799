"""Faults: kills at any moment, damaged state, non-finite loss, two writers, full disk, reruns."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mtlvsift.faults as faults
from helpers import (fails, folder_of, read_log, read_result, run_script, run_subprocess,
                     stop_after_first_checkpoint, tiny_args)
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import RunFolder


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
    assert not list(tmp_path.glob("*/stilts"))


def test_non_finite_loss_stops_with_step_and_task(tiny_model, tiny_glue, tmp_path, monkeypatch):
    from mtlvsift.train.model.multitask import MultiTaskModel

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
    folder = folder_of(tmp_path, model=tiny_model)
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


# --- issue 12: the lock under --overwrite, real save errors, data fingerprints, messages ------


def test_overwrite_refuses_while_a_live_process_holds_the_lock(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    folder = folder_of(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    take_lock = ("import sys, time; from mtlvsift.run_lock import RunLock; "
                 "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", take_lock, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "locked"
        lock = (folder / "run.lock").read_bytes()
        fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1),
                               "--overwrite", "--lr", 5e-5], "in use by process", str(owner.pid))
        with pytest.raises(MtlvsiftError, match="in use by process"):  # the check under the lock
            RunFolder(folder).claim({"lr": 5e-5}, overwrite=True)
        assert (folder / "run.lock").read_bytes() == lock
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "run.lock"} == before
    finally:
        owner.kill()
        owner.wait()
    # The owner is gone: --overwrite replaces the run.
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1),
                                "--overwrite", "--lr", 5e-5])
    assert read_result(tmp_path, "single", "rte")["config"]["lr"] == 5e-5


def _saves_partly_then(exception):
    """A save function that writes part of its folder, then fails as a full disk makes it fail."""
    def save(self, folder, *args, **kwargs):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "partial.bin").write_bytes(b"\0" * 300_000)
        raise exception
    return save


@pytest.mark.parametrize("what", ["best model", "checkpoint"])
def test_real_save_errors_name_the_space_and_remove_the_partial_copy(what, tiny_model, tiny_glue,
                                                                     tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from mtlvsift.train.checkpoint import writer as checkpoint_writer
    from mtlvsift.train.model.multitask import MultiTaskModel

    folder = folder_of(tmp_path, model=tiny_model)
    if what == "best model":  # the first evaluation saves it; safetensors fails so on a full disk
        error = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        monkeypatch.setattr(MultiTaskModel, "save", _saves_partly_then(error))
        needs, state = "It needs more than 0.3 MB (written before the failure)", {}
    else:  # the second checkpoint; torch.save fails so on a full disk
        stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
        error = RuntimeError("[enforce fail at inline_container.cc:659] . unexpected pos 1216 vs 1142")
        monkeypatch.setattr(checkpoint_writer, "write_state",
                            lambda folder, *args: _saves_partly_then(error)(None, folder))
        needs = "(the size of the previous copy)"
        state = {p.name: p.read_bytes() for p in (folder / "state").iterdir()}
    message = fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
                    f"Could not write the {what}", str(error), needs, "MB are free there",
                    "rerun the same command")
    assert not (folder / "state.tmp").exists() and not (folder / "best.tmp").exists(), message
    assert {p.name: p.read_bytes() for p in (folder / "state").glob("*")} == state
    monkeypatch.undo()
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert len(read_result(tmp_path, "single", "rte")["history"]) == 4


def _fill(folder: Path, keep_free: int = 0) -> Path:
    """Write a file into ``folder`` until its disk has at most ``keep_free`` bytes left."""
    filler = folder / "filler.bin"
    with open(filler, "wb") as handle:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while shutil.disk_usage(folder).free > keep_free + chunk:
                    handle.write(b"\0" * chunk)
                    handle.flush()
            except OSError:
                pass
    return filler


def test_a_real_full_disk_then_a_rerun_on_the_still_full_disk(tiny_model, tiny_glue, small_disk):
    out = small_disk / "outputs"
    args = ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)]
    filler = _fill(small_disk, keep_free=2_000_000)  # less than the best model needs
    message = fails("train_stilts", args, "Could not write the best model", "No space left on device",
                    "MB are free there")
    folder = folder_of(out)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "train_log.jsonl"], message
    # A killed run's partial checkpoint now fills the disk to the last byte; the rerun must clear
    # it before it writes its lock and config.
    filler.unlink()
    (folder / "state.tmp").mkdir()
    _fill(folder / "state.tmp")
    assert shutil.disk_usage(small_disk).free < 4096
    run_script("train_stilts", args)
    assert read_result(out, "single", "rte")["history"] and not (folder / "state.tmp").exists()


def test_resume_or_rerun_on_other_data_names_the_file(tiny_model, tiny_glue, tmp_path, monkeypatch):
    import mtlvsift.train.data.glue as data

    hashed = []
    real_sha256 = data._file_sha256
    monkeypatch.setattr(data, "_file_sha256", lambda path: hashed.append(path) or real_sha256(path))
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    assert sorted(p.name for p in hashed) == ["dev.tsv", "train.tsv"]  # each file hashed once
    config = json.loads((folder_of(tmp_path) / "config.json").read_text())
    assert set(config["data_fingerprints"]["rte"]) == {"train", "dev"}
    flipped = tmp_path / "flipped"
    shutil.copytree(tiny_glue, flipped)
    train = flipped / "RTE" / "train.tsv"
    train.write_text(train.read_text().replace("not_entailment", "X").replace("entailment", "not_entailment")
                     .replace("\tX", "\tentailment"))
    args = ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    on_flipped = ["--target", "rte", *tiny_args(tiny_model, flipped, tmp_path)]
    fails("train_stilts", on_flipped, str(train), "is not the RTE train data this run was trained on",
          "--overwrite")
    run_script("train_stilts", args)  # the same data resumes
    record = read_result(tmp_path, "single", "rte")
    assert record["data_fingerprints"] == config["data_fingerprints"] == record["config"]["data_fingerprints"]
    fails("train_stilts", on_flipped, str(train), "is not the RTE train data")  # finished: refused too


def test_a_cut_last_log_line_is_dropped_on_resume(tmp_path):
    run = RunFolder(tmp_path)
    run.log_file.write_text('{"step": 1, "loss": 0.5}\n\n{"step": 4, "loss": 0.4}\nnot json\n'
                            '{"loss": 0.3}\n[1]\n{"step": 2, "loss": 0.3}\n{"step": 3, "lo')
    run.trim_log(2)
    assert read_log(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.3}]


def test_a_deleted_supporting_model_is_not_blamed_on_model(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    shutil.rmtree(folder_of(tmp_path, name="sst2") / "best")
    output = fails("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                                    *tiny_args(tiny_model, tiny_glue, tmp_path)],
                   "The model to start from", "sst2/seed-0/best", "is damaged or missing", "--init-from")
    assert "--model" not in output and not list(tmp_path.glob("*/stilts"))


def test_a_non_finite_loss_before_any_checkpoint_says_none_was_kept(tiny_model, tiny_glue, tmp_path,
                                                                     monkeypatch):
    from mtlvsift.train.model.multitask import MultiTaskModel

    real_forward = MultiTaskModel.forward

    def poisoned(self, *args, **kwargs):
        output = real_forward(self, *args, **kwargs)
        return output if kwargs.get("labels") is None else (output[0] * float("nan"), output[1])

    monkeypatch.setattr(MultiTaskModel, "forward", poisoned)
    output = fails("train_stilts", ["--target", "rte", "--log-every", 1, *tiny_args(tiny_model, tiny_glue, tmp_path)],
                   "non-finite", "step 1", "No checkpoint had been written yet")
    assert "kept in" not in output and not (folder_of(tmp_path) / "state").exists()


class _Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after it runs (but `finally` blocks do)."""


def test_a_kill_after_the_record_is_tidied_by_the_next_rerun(tiny_model, tiny_glue, tmp_path, monkeypatch):
    import mtlvsift.train.loop as loop

    def killed(point):
        if point == "after_result":
            raise _Killed

    monkeypatch.setattr(loop, "fault_point", killed)
    with pytest.raises(_Killed):
        run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    monkeypatch.undo()
    folder = folder_of(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / "run.lock").write_text(json.dumps({"pid": int(dead.stdout), "started": "1@gone"}))
    assert (folder / "result.json").exists() and (folder / "state").is_dir()
    result = run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    assert "already complete" in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["best", "config.json", "result.json", "train_log.jsonl"]


# --- issue 24: an edited progress file -------------------------------------------------------


@pytest.mark.parametrize("edit, expected", [
    ({"epoch": 7}, "'epoch' is 7, but this run's epochs are 0 to 1"),
    ({"step": 5}, "'step' is 5, but batch 3 of epoch 0 is step 3"),
    ({"examples": -8}, "non-negative integers"),
    ({"batch_in_epoch": "3"}, "non-negative integers"),
    ({"probabilities": {"0": [2.0]}}, "probabilities summing to 1"),
    ({"best": None}, "'best' and 'best_by_task'"),
    ({"history": []}, "'history' must hold each evaluation"),
    ({"planted": 1}, "exactly the fields"),
    ({"epoch_batches": {"0": 5}}, "epoch 0 has 6 batches, not 5"),  # checked against the schedule
])
def test_an_edited_progress_file_is_refused_with_restart(edit, expected, tiny_model, tiny_glue, tmp_path,
                                                         monkeypatch):
    """A progress.json that cannot be where this run stands (edited by hand, another run's)
    would end the run early, or wrongly, with a normal record: each field is checked."""
    stop_after_first_checkpoint(tiny_model, tiny_glue, tmp_path, monkeypatch)
    progress_file = folder_of(tmp_path) / "state" / "progress.json"
    progress_file.write_text(json.dumps(json.loads(progress_file.read_text()) | edit))
    fails("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)],
          "The saved state in", "does not fit this run", expected, "--restart")
    assert not (folder_of(tmp_path) / "result.json").exists()

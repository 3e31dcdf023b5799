"""Faults: kills at any moment, damaged state, non-finite loss, two writers, full disk, reruns."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mtlvsift.faults as faults
from helpers import fails, read_log, read_result, run_script, run_subprocess, tiny_args
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import RunFolder


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

    folder = folder_of(tmp_path)
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
    assert "--model" not in output and not (tmp_path / "stilts").exists()


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


def test_the_lock_holds_the_start_time_so_a_reused_pid_is_stale(tmp_path):
    from mtlvsift.run_lock import RunLock, process_start_time

    lock = RunLock(tmp_path)
    lock.acquire()
    content = json.loads(lock.file.read_text())
    assert content == {"pid": os.getpid(), "started": process_start_time(os.getpid())} and content["started"]
    with pytest.raises(MtlvsiftError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    lock.release()
    # After a reboot, PID 1 (alive, holding no flock) is not the process that wrote this lock.
    lock.file.write_text(json.dumps({"pid": 1, "started": "17@another-boot"}))
    assert lock.holder() is None
    taken = RunLock(tmp_path)
    taken.acquire()
    assert json.loads(lock.file.read_text())["pid"] == os.getpid()
    taken.release()
    assert not lock.file.exists()


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


# --- issue 24: planted pickles, the lock's races, stop signals, an edited progress file ---------


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



# Every name a loader of a pickle-format file could pick: transformers' and accelerate's
# checkpoint files, torch's usual suffixes, and mtlvsift's own two (where they are not real).
PICKLE_NAMES = ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt",
                "scheduler.bin", "rng_state.pth", "random_states_0.pkl", "scaler.pt", "model.pt",
                "heads.pt", "training.pt", "model.safetensors")


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


RACE_TRIALS, RACERS = 50, 8


def _race_for_the_lock(folder: Path, barrier, wins) -> None:
    """A racer: at each trial, acquire with the others at once; the owner keeps the lock until
    every racer has tried, then releases it."""
    from mtlvsift.run_lock import RunLock

    for trial in range(RACE_TRIALS):
        barrier.wait(timeout=60)
        lock = RunLock(folder)
        try:
            lock.acquire()
            won = True
        except MtlvsiftError:
            won = False
        with wins.get_lock():
            wins[trial] += won
        barrier.wait(timeout=60)
        lock.release()
        barrier.wait(timeout=60)


@pytest.mark.parametrize("stale", [False, True], ids=["no lock", "stale lock"])
def test_racing_acquirers_make_exactly_one_owner(stale, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, wins = context.Barrier(RACERS + 1), context.Array("i", RACE_TRIALS)
    racers = [context.Process(target=_race_for_the_lock, args=(tmp_path, barrier, wins), daemon=True)
              for _ in range(RACERS)]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for racer in racers:
        racer.start()
    try:
        for _ in range(RACE_TRIALS):
            if stale:
                (tmp_path / "run.lock").write_text(json.dumps({"pid": int(dead.stdout), "started": "1@gone"}))
            for _ in range(3):  # start, all tried, all released
                barrier.wait(timeout=60)
            assert not (tmp_path / "run.lock").exists()
    finally:
        for racer in racers:
            racer.join(timeout=10)
            if racer.is_alive():
                racer.terminate()
    assert list(wins) == [1] * RACE_TRIALS


def test_a_live_process_named_without_a_start_time_is_never_taken_over(tmp_path):
    """The rule for a lock file no process holds (written before the flock): it is taken over
    when the process it names is dead, or is another process than the writer (another start
    time); a live process named with no start time may be the owner, so it is refused."""
    from mtlvsift.run_lock import RunLock

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = RunLock(tmp_path)
    try:
        for content in (str(owner.pid), json.dumps({"pid": owner.pid}), json.dumps({"pid": owner.pid, "started": 7})):
            lock.file.write_text(content)
            assert lock.holder() == owner.pid
            with pytest.raises(MtlvsiftError, match=f"in use by process {owner.pid}"):
                lock.acquire()
            assert lock.file.read_text() == content
    finally:
        owner.kill()
        owner.wait()
    lock.acquire()  # its process is gone now
    assert json.loads(lock.file.read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_held_by_a_live_process_is_refused_whatever_its_file_says(tmp_path):
    take_lock = ("import sys, time; from mtlvsift.run_lock import RunLock; "
                 "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", take_lock, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    from mtlvsift.run_lock import RunLock

    try:
        assert owner.stdout.readline().strip() == "locked"
        lock = RunLock(tmp_path)
        assert lock.holder() == owner.pid
        lock.file.write_text("")  # emptied (or not yet written): the flock still says it is held
        with pytest.raises(MtlvsiftError, match="in use by another process"):
            lock.acquire()
    finally:
        owner.kill()
        owner.wait()
    assert lock.holder() is None  # killed: the kernel dropped its flock
    lock.acquire()
    lock.release()
    assert not lock.file.exists()


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_model, tiny_glue, tmp_path_factory) -> Path:
    """A run's folder (state kept) to compare the interrupted and resumed runs with."""
    out = tmp_path_factory.mktemp("uninterrupted")
    run_script("train_stilts", ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, out)])
    return folder_of(out)


def assert_same_run(clean: Path, resumed: Path) -> None:
    """The same final weights, best model and record as the uninterrupted run."""
    for weights in ("state/model.safetensors", "best/encoder/model.safetensors"):
        a, b = load_file(clean / weights), load_file(resumed / weights)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), weights
    ra, rb = (json.loads((folder / "result.json").read_text()) for folder in (clean, resumed))
    assert ra["history"] == rb["history"] and ra["best"] == rb["best"]


@pytest.mark.slow
@pytest.mark.parametrize("fault, least_step", [("mid_checkpoint:sigterm:1", 3), ("step:sigusr1:5", 3),
                                               ("mid_checkpoint:sighup:2", 6)])
def test_a_stop_signal_keeps_the_checkpoint_under_way_and_the_rerun_ends_as_if_uninterrupted(
        fault, least_step, uninterrupted_run, tiny_model, tiny_glue, tmp_path):
    """SIGTERM, SIGUSR1 (SLURM's warning) and SIGHUP are handled as Ctrl-C: the step and the write
    under way are finished (``mid_checkpoint``: the signal comes while the checkpoint of step
    ``least_step`` is being written; the loop may have started the next by the time the step
    ends), one line names the checkpoint kept, the lock is released, the exit status is 128 +
    the signal's number."""
    import signal

    args = ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    stopped = run_subprocess(args, fault)
    name = fault.split(":")[1].upper()
    assert stopped.returncode == 128 + getattr(signal, name), stopped.stderr[-2000:]
    folder = folder_of(tmp_path)
    step = json.loads((folder / "state" / "progress.json").read_text())["step"]
    assert step >= least_step and step % 3 == 0
    output = " ".join((stopped.stdout + stopped.stderr).split())
    assert (f"Stopped ({name}): the last checkpoint, at step {step}, is saved in {folder / 'state'}. "
            f"Rerun the same command to resume from it.") in output
    assert "Traceback" not in output and not (folder / "run.lock").exists()
    resumed = run_script("train_stilts", args)
    assert f"Resuming from step {step} " in " ".join(resumed.output.split())
    assert_same_run(uninterrupted_run, folder)


def test_a_stop_signal_raises_stopped_at_once_or_at_the_next_safe_point():
    import signal

    from mtlvsift.stop_signals import (Stopped, exit_status, signal_label, stop_on_signals, stop_point,
                                       stops_at_safe_points)
    from mtlvsift.train.run_messages import interrupted_message

    before = signal.getsignal(signal.SIGTERM)
    for number, status in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGUSR1, 138)):
        with pytest.raises(Stopped) as stopped, stop_on_signals():
            signal.raise_signal(number)
        assert exit_status(stopped.value) == status
        assert interrupted_message(Path("/nowhere"), signal_label(stopped.value)).startswith(
            f"Stopped ({signal.Signals(number).name}) before the first checkpoint")
    steps = []
    with pytest.raises(Stopped), stop_on_signals(), stops_at_safe_points():
        for step in range(3):
            steps.append(step)
            if step == 1:
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)  # a repeat while stopping changes nothing
            stop_point()
    assert steps == [0, 1]  # the step under way ended, then it stopped
    assert exit_status(KeyboardInterrupt()) == 130 and signal_label(KeyboardInterrupt()) == "Ctrl-C"
    assert signal.getsignal(signal.SIGTERM) is before


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

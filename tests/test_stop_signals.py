"""Stop signals (SIGTERM, SIGHUP, SIGUSR1, Ctrl-C): the write under way kept, one line, the rerun
ends as if uninterrupted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import folder_of, run_script, run_subprocess, tiny_args


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


def logged_steps(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (folder / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("name, step", [("SIGTERM", None), ("SIGUSR1", None), ("SIGHUP", None), ("SIGTERM", 6)])
def test_a_stop_signal_at_a_random_step_checkpoints_there_and_the_rerun_ends_as_if_uninterrupted(
        name, step, uninterrupted_run, tiny_model, tiny_glue, tmp_path):
    """SIGTERM (SLURM's end of a job), SIGUSR1 (its warning) and SIGHUP, each at a random step of
    the 12 (evaluations at 3, 6, 9, 12): the step ends, its checkpoint is written there before
    the exit (a requeued job replays nothing), one line names it, the status is 128 + the
    signal's number; the rerun resumes at that step and ends with the uninterrupted run's
    weights, best model and record, no step logged twice. Step 6 is an evaluation's: the signal
    stops it at its first dev batch, and the rerun evaluates step 6 before it trains on."""
    import random
    import signal

    step = step or random.SystemRandom().randint(1, 11)
    args = ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    stopped = run_subprocess(args, f"step:{name.lower()}:{step}")
    assert stopped.returncode == 128 + getattr(signal, name), (step, stopped.stderr[-2000:])
    folder = folder_of(tmp_path)
    assert json.loads((folder / "state" / "progress.json").read_text())["step"] == step
    output = " ".join((stopped.stdout + stopped.stderr).split())
    assert (f"Stopped ({name}): the last checkpoint, at step {step}, is saved in {folder / 'state'}. "
            f"Rerun the same command to resume from it.") in output, step
    assert "Traceback" not in output and not (folder / "run.lock").exists()
    resumed = run_script("train_stilts", args)
    assert f"Resuming from step {step} " in " ".join(resumed.output.split())
    assert_same_run(uninterrupted_run, folder)
    assert logged_steps(folder) == logged_steps(uninterrupted_run), step


@pytest.mark.slow
@pytest.mark.parametrize("fault, least_step", [("mid_checkpoint:sigterm:1", 3), ("mid_checkpoint:sighup:2", 6)])
def test_a_stop_signal_during_a_write_keeps_it_and_the_rerun_ends_as_if_uninterrupted(
        fault, least_step, uninterrupted_run, tiny_model, tiny_glue, tmp_path):
    """A stop signal while the checkpoint of step ``least_step`` is written in the background:
    that write completes and is kept, the step under way ends (the loop may have gone on a few
    steps by the time the signal is handled) and is checkpointed too; the lock is released, the exit status is 128 + the
    signal's number."""
    import signal

    args = ["--target", "rte", "--keep-state", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    stopped = run_subprocess(args, fault)
    name = fault.split(":")[1].upper()
    assert stopped.returncode == 128 + getattr(signal, name), stopped.stderr[-2000:]
    folder = folder_of(tmp_path)
    step = json.loads((folder / "state" / "progress.json").read_text())["step"]
    assert step >= least_step  # the write under way, or the stop's own checkpoint after it
    output = " ".join((stopped.stdout + stopped.stderr).split())
    assert f"Stopped ({name}): the last checkpoint, at step {step}, is saved in {folder / 'state'}." in output
    assert "Traceback" not in output and not (folder / "run.lock").exists()
    resumed = run_script("train_stilts", args)
    assert f"Resuming from step {step} " in " ".join(resumed.output.split())
    assert_same_run(uninterrupted_run, folder)
    assert logged_steps(folder) == logged_steps(uninterrupted_run)


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

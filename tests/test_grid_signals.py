"""Stopping a grid: its --jobs runs stop with it (a stop signal passed on, or SIGTERM when the
grid is killed), their logs keep every attempt; a stopped calibration leaves no folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_dir, REPO_ROOT, run_script
from mtlvsift.run_lock import RunLock

HANG = "step:hang:4"  # after the checkpoint of step 3 (6 steps an epoch, --eval-every 0.5); a stop
# there writes step 4's


def grid_args(tiny_model, tiny_glue, out: Path) -> list[str]:
    return ["--tasks", "rte", "--seeds", "0,1", "--methods", "single", "--model", str(tiny_model),
            "--data-dir", str(tiny_glue), "--output-dir", str(out), "--epochs", "1",
            "--batch-size", "8", "--max-seq-length", "32", "--jobs", "2"]


def start_grid(args: list[str], fault: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "scripts" / "run_grid.py"), *args],
                            env=dict(os.environ, MTLVSIFT_FAULT=fault, **env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_folders(out: Path) -> list[Path]:
    return [run_dir(out, "single", "rte", seed) for seed in (0, 1)]


def logs(out: Path) -> list[Path]:
    """Each run's grid log (``<model folder>__single__rte__seed-<k>.log``; not there yet: a path
    that does not exist)."""
    found = [sorted((out / "grid-logs").glob(f"*__single__rte__seed-{seed}.log")) for seed in (0, 1)]
    return [(names or [out / "grid-logs" / f"none-yet-{seed}.log"])[0] for seed, names in enumerate(found)]


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.2)


def both_runs_hang(out: Path) -> list[int]:
    """Wait until both runs hang at the fault point; their process ids (from their locks)."""
    wait_until(lambda: all(p.exists() and "fault: hanging at step" in p.read_text() for p in logs(out)),
               300, "both runs reach the fault point")
    return [RunLock(folder).holder() for folder in run_folders(out)]


def ended(pid: int) -> bool:
    """The process is gone, or a zombie its new parent has not reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def kill_left(pids: list[int]) -> None:
    for pid in pids:
        if pid and not ended(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_stopped_grid_stops_its_runs_and_a_rerun_finishes_them(name, tmp_path, tiny_model, tiny_glue):
    """The signal is passed on to both runs, which stop after their step (their locks released,
    their checkpoints kept); the grid waits, says so in one line and exits 128 + the signal's
    number; the rerun resumes both and each log keeps both attempts."""
    out = tmp_path / "out"
    args = grid_args(tiny_model, tiny_glue, out)
    grid = start_grid(args, HANG)
    pids = []
    try:
        pids = both_runs_hang(out)
        grid.send_signal(getattr(signal, name))
        output, _ = grid.communicate(timeout=120)
    finally:
        grid.kill()
        kill_left(pids)
    number = getattr(signal, name)
    label = "Ctrl-C" if name == "SIGINT" else name
    assert grid.returncode == 128 + number, output
    text = " ".join(output.split())
    assert f"Stopped ({label}): 2 run(s) were interrupted" in text and "Traceback" not in text
    assert all(ended(pid) for pid in pids)
    for folder, log in zip(run_folders(out), logs(out)):
        assert RunLock(folder).holder() is None and not (folder / "run.lock").exists()
        assert (folder / "state" / "progress.json").exists()
        assert f"Stopped ({label}): the last checkpoint, at step 4" in " ".join(log.read_text().split())
    done = run_script("run_grid", args)
    assert "Grid: 2 trained, 0 already complete, 0 failed." in " ".join(done.output.split())
    for log in logs(out):
        text = log.read_text()
        assert text.count("=== ") == 2 and text.index("Stopped (") < text.index("Resuming from step 4")


@pytest.mark.slow
def test_a_killed_grid_takes_its_runs_with_it(tmp_path, tiny_model, tiny_glue):
    """SIGKILL of the grid: its runs get SIGTERM from the kernel (PR_SET_PDEATHSIG) and stop as
    they would for the grid's SIGTERM, releasing their locks; none trains on under PID 1."""
    out = tmp_path / "out"
    grid = start_grid(grid_args(tiny_model, tiny_glue, out), HANG)
    pids = []
    try:
        pids = both_runs_hang(out)
        grid.kill()
        grid.wait()
        wait_until(lambda: all(ended(pid) for pid in pids), 120, "the runs end with the grid")
    finally:
        kill_left(pids)
    for folder, log in zip(run_folders(out), logs(out)):
        assert RunLock(folder).holder() is None
        assert "Stopped (SIGTERM): the last checkpoint, at step 4" in " ".join(log.read_text().split())


_CALIBRATION_STOPPED = """
import os, signal, sys, types
loop = types.ModuleType("mtlvsift.train.loop")
def run_training(config):  # a signal that arrives outside a run's own handling (between runs)
    os.makedirs(config.run_dir)
    os.kill(os.getpid(), signal.SIGTERM)
loop.run_training = run_training
sys.modules["mtlvsift.train.loop"] = loop
__file__ = sys.argv.pop(1)
exec(open(__file__).read())
"""


def test_a_stop_signal_while_calibrating_leaves_no_temporary_folder(tmp_path, tiny_glue):
    """run_grid --dry-run calibrates in a temporary folder: SIGTERM between (or in) its runs
    removes it, one line says so, the exit status is 143."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run([sys.executable, "-c", _CALIBRATION_STOPPED, str(REPO_ROOT / "scripts" / "run_grid.py"),
                           "--tasks", "rte", "--seeds", "0", "--methods", "single", "--data-dir",
                           str(tiny_glue), "--output-dir", str(tmp_path / "out"), "--dry-run"],
                          env=dict(os.environ, TMPDIR=str(tmp)), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 143, done.stdout + done.stderr
    assert "Stopped (SIGTERM) while calibrating" in " ".join(done.stdout.split())
    assert not list(tmp.glob("mtlvsift-calibration-*"))

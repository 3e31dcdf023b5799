"""run.lock: one owner however many processes race for it, stale locks taken over, live ones never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlvsift.errors import MtlvsiftError

RACE_TRIALS, RACERS = 50, 8


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

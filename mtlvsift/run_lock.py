"""A run folder's lock file: the owner's process id and start time.

A second process on the same folder is refused at once, naming the owner. A lock left by a dead
process is taken over, and so is one whose process id now belongs to an unrelated process (after
a reboot, PID 1): the start time stored with the id tells them apart.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from mtlvsift.errors import MtlvsiftError

LOCK_FILE = "run.lock"


class RunLock:
    """A lock file holding the owner's process id and start time; a lock left by a dead process,
    or whose process id now belongs to another process (after a reboot), is taken over."""

    def __init__(self, folder: Path):
        self.file = Path(folder) / LOCK_FILE

    def acquire(self) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(2):
                try:
                    fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    self.check_free()
                    self.file.unlink(missing_ok=True)  # stale: its owner is gone
                    continue
                owner = {"pid": os.getpid(), "started": process_start_time(os.getpid())}
                try:
                    with os.fdopen(fd, "w") as handle:
                        handle.write(json.dumps(owner))
                except OSError:
                    self.file.unlink(missing_ok=True)  # an empty lock would say nothing
                    raise
                return
        except OSError as exc:
            raise MtlvsiftError(
                f"Could not create the lock file {self.file}: {exc}. Check that the output folder "
                f"is writable and its disk has free space, then rerun.") from exc
        raise MtlvsiftError(f"Could not take the lock {self.file}; another process keeps taking it.")

    def check_free(self) -> None:
        """Refuse, naming the owner, while a live process holds the lock."""
        owner = self.holder()
        if owner is not None:
            raise MtlvsiftError(
                f"{self.file.parent} is in use by process {owner} (lock file {self.file}). "
                f"Wait for it to finish, or stop it first."
            )

    def holder(self) -> int | None:
        """The process id of the live owner, None when there is no lock or a stale one."""
        owner = self._owner()
        if owner is None or not _process_alive(owner[0]):
            return None
        pid, started = owner
        now = process_start_time(pid)
        if started is not None and now is not None and started != now:
            return None  # the process id was reused by an unrelated process
        return pid

    def release(self) -> None:
        owner = self._owner()
        if owner is not None and owner[0] == os.getpid():
            self.file.unlink(missing_ok=True)

    def _owner(self) -> tuple[int, str | None] | None:
        """(pid, start time) from the lock file; the older format holds the pid alone."""
        try:
            data = json.loads(self.file.read_text() or "null")
        except (OSError, ValueError, RecursionError):
            return None
        if isinstance(data, int):
            data = {"pid": data}
        pid = data.get("pid") if isinstance(data, dict) else None
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        started = data.get("started")
        return pid, started if isinstance(started, str) else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    except OverflowError:  # not a process id at all
        return False
    return True


def process_start_time(pid: int) -> str | None:
    """When process ``pid`` started, as '<clock ticks after boot>@<boot id>' (/proc/<pid>/stat,
    field 22), or psutil's create time where there is no /proc; None when unknown."""
    try:
        ticks = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
        return f"{ticks}@{Path('/proc/sys/kernel/random/boot_id').read_text().strip()}"
    except (OSError, IndexError):
        pass
    try:
        import psutil  # not a dependency: used where it is installed

        return repr(psutil.Process(pid).create_time())
    except Exception:  # not installed, no such process, access denied
        return None

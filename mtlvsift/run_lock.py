"""A run folder's lock file: held with ``flock`` for the run's life; it names the owner.

The owner holds an exclusive ``flock`` on ``run.lock`` from ``acquire`` to ``release`` (the
kernel drops it when the process dies, however it dies), so two processes can never both hold
it, and a lock whose holder is gone is free by construction. The file says who holds it: the
owner's process id and start time, for messages. A lock file that no process holds is taken
over, unless it names a live process that may hold it another way (a version of mtlvsift from
before the ``flock``): its process id alive with the start time stored, or with none stored. A
stored start time that differs from the live process's means the id was reused (after a reboot,
PID 1): that lock is stale.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from mtlvsift.errors import MtlvsiftError

LOCK_FILE = "run.lock"
# A reader's probe holds the lock for microseconds: an acquirer retries this long before it
# takes the lock for another process's.
_BUSY_RETRIES, _BUSY_WAIT = 5, 0.01


class RunLock:
    """``run.lock`` of a folder: ``acquire`` takes it for this process (or names the owner),
    ``release`` gives it back."""

    def __init__(self, folder: Path):
        self.file = Path(folder) / LOCK_FILE
        self._fd: int | None = None  # the open lock file while this process holds it

    def acquire(self) -> None:
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                if not _flock_soon(fd):
                    os.close(fd)
                    self._refuse(self.named_owner())
                if _is_current_file(fd, self.file):
                    break
                os.close(fd)  # its owner released (unlinked) it while we waited: open the new one
            try:
                self._take(fd)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            raise MtlvsiftError(
                f"Could not create the lock file {self.file}: {exc}. Check that the output folder "
                f"is writable and its disk has free space, then rerun.") from exc

    def _take(self, fd: int) -> None:
        """With the flock held: refuse an owner of the older kind, else write ours."""
        owner = _owner_of_text(_read_all(fd))
        if owner is not None and _holds_without_flock(*owner) and owner[0] != os.getpid():
            self._refuse(owner[0])
        content = json.dumps({"pid": os.getpid(), "started": process_start_time(os.getpid())})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, content.encode(), 0)
            os.fsync(fd)
        except OSError:
            os.unlink(self.file)  # an empty lock would say nothing; we hold it, so it is ours
            raise
        self._fd = fd

    def check_free(self) -> None:
        """Refuse, naming the owner, while a live process holds the lock."""
        owner = self.holder()
        if owner is not None:
            self._refuse(owner)

    def _refuse(self, owner: int | None) -> None:
        who = f"process {owner}" if owner else "another process"
        raise MtlvsiftError(f"{self.file.parent} is in use by {who} (lock file {self.file}). "
                            f"Wait for it to finish, or stop it first.")

    def holder(self) -> int | None:
        """The process id of the live owner (0 when it has not written its id yet), None when
        the lock is free."""
        try:
            fd = os.open(self.file, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # no lock file (an unreadable one: acquire says why)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self.named_owner() or 0
            owner = _owner_of_text(_read_all(fd))
        finally:
            os.close(fd)  # drops the probe's shared lock
        return owner[0] if owner is not None and _holds_without_flock(*owner) else None

    def named_owner(self) -> int | None:
        """The process id the lock file names (None: none, or not yet written)."""
        try:
            owner = _owner_of_text(self.file.read_text())
        except OSError:
            return None
        return None if owner is None else owner[0]

    def release(self) -> None:
        """Remove the lock file while still holding it, then let go."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _is_current_file(fd, self.file):
                self.file.unlink()
        except OSError:
            pass  # the folder went away or became read-only: the flock goes with the descriptor
        finally:
            os.close(fd)


def _flock_soon(fd: int) -> bool:
    """Take the exclusive flock, retrying briefly in case a reader's probe holds it."""
    for attempt in range(_BUSY_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < _BUSY_RETRIES - 1:
                time.sleep(_BUSY_WAIT)
    return False


def _is_current_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releaser unlinks the file it held)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _read_all(fd: int) -> str:
    return os.pread(fd, 1 << 16, 0).decode(errors="replace")


def _owner_of_text(text: str) -> tuple[int, str | None] | None:
    """(pid, start time) from the lock file's text; the older format holds the pid alone."""
    try:
        data = json.loads(text or "null")
    except (ValueError, RecursionError):
        return None
    if isinstance(data, int):
        data = {"pid": data}
    pid = data.get("pid") if isinstance(data, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    started = data.get("started")
    return pid, started if isinstance(started, str) else None


def _holds_without_flock(pid: int, started: str | None) -> bool:
    """Whether the process a lock file names, though it holds no flock, may own the folder: it
    is alive and is the process that wrote the lock (same start time, or none stored to tell)."""
    if not _process_alive(pid):
        return False
    now = process_start_time(pid)
    return started is None or now is None or started == now


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

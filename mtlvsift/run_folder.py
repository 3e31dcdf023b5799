"""Run folders: naming, the stored config (the run's identity), atomic writes, a lock.

``outputs/<method>/<name>/seed-<k>/`` holds ``config.json`` (written when the run starts),
``result.json`` (the run record, written atomically once the run completes), ``best/`` (the best
model), ``state/`` (the latest accelerate state, for resuming) and ``train_log.jsonl``.
What ``result.json`` holds is ``mtlvsift.run_record``'s business; this module only names it.
The one atomic writer of the project lives here: every file another program may read while it is
being written (records, configs, reports) goes through ``atomic_write``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
LOCK_FILE = "run.lock"


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write to a temporary sibling, flush to disk, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        fault_point("mid_write")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def replace_folder(tmp: Path, final: Path) -> None:
    """Swap a freshly written folder in for ``final``; at every moment one complete copy exists."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def existing_folder(final: Path) -> Path | None:
    """``final``, or its ``.old`` copy when a crash fell between the two renames of replace_folder."""
    old = final.with_name(final.name + ".old")
    if final.is_dir():
        return final
    return old if old.is_dir() else None


def variant_suffix(parts: dict[str, Any]) -> str:
    """``{"sampling": "size", "tf": 0.5}`` -> ``sampling-size_tf-0.5``; None values are left out."""
    items = [f"{key}-{_short(value)}" for key, value in parts.items() if value is not None]
    return "_".join(items)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_name(base: str, variant: str) -> str:
    return f"{base}__{variant}" if variant else base


def run_folder(output_dir: str | Path, method: str, name: str, seed: int) -> Path:
    return Path(output_dir) / method / name / f"seed-{seed}"


@dataclass
class RunFolder:
    path: Path

    @property
    def result_file(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def best_dir(self) -> Path:
        return self.path / "best"

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def log_file(self) -> Path:
        return self.path / "train_log.jsonl"

    def is_complete(self) -> bool:
        return self.result_file.is_file()

    def prepare(self, identity: dict[str, Any], overwrite: bool) -> str:
        """Check the folder against this run's config: returns "new", "resume" or "complete".

        A folder whose stored config differs is an error unless ``overwrite``, so that a wrong
        flag never costs a finished run.
        """
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        if self.config_file.is_file():
            stored = json.loads(self.config_file.read_text())
            if stored != identity:
                diff = sorted(k for k in set(stored) | set(identity) if stored.get(k) != identity.get(k))
                shown = ", ".join(f"{k}: {stored.get(k)!r} -> {identity.get(k)!r}" for k in diff)
                raise MtlvsiftError(
                    f"{self.path} holds a run with a different config ({shown}). Rerun with the "
                    f"same options to resume it, pass --overwrite to replace it, or choose another "
                    f"--output-dir."
                )
            return "complete" if self.is_complete() else "resume"
        return "new"

    def recover(self) -> None:
        """Undo what a kill can leave: a swap cut between its two renames, temporary copies."""
        for final in (self.state_dir, self.best_dir):
            old = final.with_name(final.name + ".old")
            if old.is_dir() and not final.exists():
                os.replace(old, final)
            tmp = final.with_name(final.name + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
        for leftover in self.path.glob(".*.tmp-*"):
            leftover.unlink(missing_ok=True)

    def write_config(self, identity: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config_file, identity)

    def discard_progress(self) -> None:
        """--restart: forget the saved state, best model and log of an unfinished run."""
        for folder in (self.state_dir, self.best_dir, self.path / "state.old", self.path / "best.old"):
            if folder.exists():
                shutil.rmtree(folder)
        self.log_file.unlink(missing_ok=True)

    def trim_log(self, step: int) -> None:
        """On resume, forget log lines written after the checkpoint (they will be written again)."""
        if not self.log_file.exists():
            return
        lines = [line for line in self.log_file.read_text().splitlines()
                 if line.strip() and json.loads(line)["step"] <= step]
        self.log_file.write_text("".join(line + "\n" for line in lines))

    def append_log(self, entry: dict[str, Any]) -> None:
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    @contextmanager
    def saving(self, what: str) -> Iterator[None]:
        """A failed write (full disk, lost permissions) names what failed; the last good copies stay."""
        try:
            yield
        except OSError as exc:
            for tmp in (self.path / "state.tmp", self.path / "best.tmp"):
                shutil.rmtree(tmp, ignore_errors=True)  # give back the space of the partial copy
            raise MtlvsiftError(
                f"Could not write {what} in {self.path}: {exc}. The previous checkpoint and best "
                f"model are intact; free space or fix permissions, then rerun the same command to "
                f"resume."
            ) from exc


class RunLock:
    """A lock file holding the owner's process id; a lock left by a dead process is taken over."""

    def __init__(self, folder: Path):
        self.file = Path(folder) / LOCK_FILE

    def acquire(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _process_alive(owner):
                    raise MtlvsiftError(
                        f"{self.file.parent} is in use by process {owner} (lock file {self.file}). "
                        f"Wait for it to finish, or stop it first."
                    ) from None
                self.file.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return
        raise MtlvsiftError(f"Could not take the lock {self.file}; another process keeps taking it.")

    def release(self) -> None:
        if self._owner() == os.getpid():
            self.file.unlink(missing_ok=True)

    def _owner(self) -> int | None:
        try:
            return int(self.file.read_text().strip() or "0") or None
        except (OSError, ValueError):
            return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True

"""Run folders: naming, the stored config (the run's identity), claiming (with the lock of
run_lock.py), atomic writes.

``outputs/<model>/<method>/<name>/seed-<k>/`` (``<model>``: ``model_slug`` of ``--model``, so
that runs of two models share a tree; a tree made before the model named a folder,
``outputs/<method>/<name>/seed-<k>/``, is still read and resumed: ``locate_run_folder``) holds ``config.json`` (written when the run starts),
``result.json`` (the run record, written atomically once the run completes), ``best/`` (the best
model; ``best-<task>/``: a task's own, in multi-task runs), ``state/`` (the latest accelerate
state, for resuming) and ``train_log.jsonl``.
What ``result.json`` holds is ``mtlvsift.run_record``'s business; this module only names it.
The one atomic writer of the project lives here: every file another program may read while it is
being written (records, configs, reports) goes through ``atomic_write``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.faults import fault_point
from mtlvsift.names import DEFAULT_PROTOCOL
from mtlvsift.run_identity import StaleRun, identity_changes, stale_reason
from mtlvsift.run_lock import RunLock

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
TRACKING_DIR = "tracking"  # --report-to's files (TensorBoard's event files)


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


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words: 'an array', 'null', 'a string'..."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


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


_SLUG_MAX = 100  # characters of a model's folder name (a file name may hold 255 bytes)


def model_slug(model: str) -> str:
    """A folder name for a model id or path: 'org/model' -> 'org-model', '/data/enc' ->
    'data-enc'; a long one is cut, with a hash of the whole name so that it stays distinct."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"
    if len(slug) > _SLUG_MAX:
        digest = hashlib.sha256(model.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        slug = f"{slug[:_SLUG_MAX - 13].rstrip('-.')}-{digest}"
    return slug


def report_slug(model: str, protocol: str, data_variant: str) -> str:
    """The folder of one model, protocol and data variant (a report's, and recommend.py's kept
    rankings'): 'org-model', 'org-model__protocol-original', 'org-model__n-300',
    'org-model__protocol-original_n-300' (as run folders are named)."""
    lead = f"protocol-{protocol}" if protocol != DEFAULT_PROTOCOL else ""
    suffix = "_".join(filter(None, (lead, data_variant)))
    return model_slug(model) + (f"__{suffix}" if suffix else "")


def run_name(base: str, variant: str) -> str:
    return f"{base}__{variant}" if variant else base


def run_folder(output_dir: str | Path, model: str, method: str, name: str, seed: int) -> Path:
    """Where a run of ``model`` goes: ``<outputs>/<model slug>/<method>/<name>/seed-<k>``."""
    return Path(output_dir) / model_slug(model) / method / name / f"seed-{seed}"


def legacy_run_folder(output_dir: str | Path, method: str, name: str, seed: int) -> Path:
    """Where a run went before the model named a folder: ``<outputs>/<method>/<name>/seed-<k>``."""
    return Path(output_dir) / method / name / f"seed-{seed}"


def locate_run_folder(output_dir: str | Path, model: str, method: str, name: str, seed: int) -> Path:
    """The run's folder: ``run_folder``, unless only the legacy folder exists and holds a run of
    the same model (its config.json says so), which is then resumed or skipped where it is."""
    folder = run_folder(output_dir, model, method, name, seed)
    legacy = legacy_run_folder(output_dir, method, name, seed)
    if folder.exists() or not (legacy / CONFIG_FILE).is_file():
        return folder
    try:
        stored = json.loads((legacy / CONFIG_FILE).read_text())
    except (OSError, ValueError, RecursionError):  # damaged: not known to be this model's
        return folder
    return legacy if isinstance(stored, dict) and stored.get("model") == model else folder


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

    @property
    def tracking_dir(self) -> Path:
        return self.path / TRACKING_DIR

    def is_complete(self) -> bool:
        return self.result_file.is_file()

    def stored_identity(self) -> dict[str, Any] | None:
        """The identity in ``config.json``, None when there is none; a damaged one is an error."""
        return _read_json_object(self.config_file) if self.config_file.exists() else None

    def prepare(self, identity: dict[str, Any]) -> str:
        """Check the folder against this run's config: returns "new", "resume" or "complete".

        A folder whose stored config differs is an error (--overwrite replaces the run, and is
        handled by ``claim``), so that a wrong flag never costs a finished run; one that differs
        only in what it read from other runs is ``StaleRun`` (--retrain-stale replaces it).
        """
        stored = self.stored_identity()
        if stored is None:
            return "new"
        stale = stale_reason(stored, identity)
        if stale:
            raise StaleRun(
                f"{self.path} is stale: {stale} (e.g. after more "
                f"--support-seeds). It is kept as it is; rerun with --retrain-stale to train it "
                f"again, or with the --support-seeds it was made with.")
        diff = identity_changes(stored, identity)
        if diff:
            shown = ", ".join(f"{k}: {stored.get(k)!r} -> {identity.get(k)!r}" for k in diff)
            raise MtlvsiftError(
                f"{self.path} holds a run with a different config ({shown}). Rerun with the "
                f"same options to resume it, pass --overwrite to replace it, or choose another "
                f"--output-dir."
            )
        return "complete" if self.is_complete() else "resume"

    def is_stale(self, identity: dict[str, Any]) -> bool:
        """Whether the folder holds this run made from another start model or other scores."""
        try:
            self.prepare(identity)
        except StaleRun:
            return True
        except MtlvsiftError:
            return False
        return False

    def claim(self, identity: dict[str, Any], overwrite: bool = False,
              restart: bool = False) -> RunLock:
        """Take the folder for this run: the lock, then (--overwrite) an empty folder, the config.

        A live owner is refused before anything is touched. Leftovers of a killed run are removed
        before the first write: on a full disk, their space is what the lock and config need.
        """
        lock = RunLock(self.path)
        lock.check_free()
        try:
            self.recover()
        except OSError as exc:
            raise MtlvsiftError(f"Could not remove what an interrupted run left in {self.path}: "
                                f"{exc}. Check the permissions, then rerun.") from exc
        lock.acquire()
        try:
            if overwrite:
                self.clear(keep=lock.file)
            self.write_config(identity)
            if restart:
                self.discard_progress()
        except OSError as exc:
            lock.release()
            raise MtlvsiftError(f"Could not write the run config in {self.path}: {exc}. "
                                f"Check the disk and permissions, then rerun.") from exc
        return lock

    def clear(self, keep: Path) -> None:
        """--overwrite: remove everything in the folder but ``keep`` (the lock this run holds)."""
        for entry in self.path.iterdir():
            if entry == keep:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def tidy_complete(self, keep_state: bool) -> None:
        """Finish the clean-up of a complete run that a kill cut short after result.json was
        written (its state/, temporary copies, a stale lock), unless a live process holds it."""
        lock = RunLock(self.path)
        try:
            lock.acquire()  # held while tidying, so a process that takes the folder meanwhile keeps it
        except MtlvsiftError:  # a live owner, or a read-only folder: the run itself is complete
            return
        try:
            self.recover()
            if not keep_state:
                shutil.rmtree(self.state_dir, ignore_errors=True)
        except OSError:  # best effort, as above
            pass
        finally:
            lock.release()

    def recover(self) -> None:
        """Undo what a kill can leave: a swap cut between its two renames, temporary copies."""
        for final in (self.state_dir, self.best_dir, *{p.with_suffix("") for p in self.path.glob("best-*.*")}):
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
        """--restart: forget the saved state, best model and logs of an unfinished run (the
        trackers' too: the run logs its steps again)."""
        for folder in (self.state_dir, self.path / "state.old", *self.path.glob("best*"), self.tracking_dir):
            if folder.exists():
                shutil.rmtree(folder)
        self.log_file.unlink(missing_ok=True)

    def trim_log(self, step: int) -> None:
        """On resume, forget log lines written after the checkpoint (they will be written again)
        and any line that is not a log entry (the last one, cut short by a kill)."""
        if not self.log_file.exists():
            return
        lines = [line for line in self.log_file.read_text(errors="replace").splitlines()
                 if (logged := _log_step(line)) is not None and logged <= step]
        self.log_file.write_text("".join(line + "\n" for line in lines))

    def append_log(self, entry: dict[str, Any]) -> None:
        with open(self.log_file, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    @contextmanager
    def saving(self, what: str, folder: Path | None = None) -> Iterator[None]:
        """A failed write (full disk, lost permissions) names what failed and the space it needs
        (``folder``: the copy being replaced); the partial copy is removed, the last good stay."""
        from safetensors import SafetensorError  # what safetensors raises on a full disk

        try:
            yield
        except (OSError, RuntimeError, SafetensorError) as exc:  # torch.save: RuntimeError
            needed = _space_needed(self.path, folder)
            for tmp in (self.path / "state.tmp", *self.path.glob("best*.tmp")):
                shutil.rmtree(tmp, ignore_errors=True)  # give back the space of the partial copy
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
            raise MtlvsiftError(
                f"Could not write {what} in {self.path}: {reason}.{needed} The previous "
                f"checkpoint and best model are intact; free space or fix permissions, then rerun "
                f"the same command to resume."
            ) from exc


def _read_json_object(path: Path) -> dict[str, Any]:
    """A run folder's JSON file, which must hold an object: anything else is one clear error."""
    try:
        data = json.loads(path.read_text())
        problem = None if isinstance(data, dict) else f"it holds {json_kind(data)}, not an object"
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        data, problem = None, f"{type(exc).__name__}: {exc}"
    if problem:
        raise MtlvsiftError(f"{path} is damaged ({problem[:200]}). Restore it, or pass "
                            f"--overwrite to train this run again.")
    return data


def _log_step(line: str) -> int | None:
    """The step of one train_log.jsonl line, None for a line that is not a whole entry."""
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError, RecursionError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def folder_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (0 where it cannot be read)."""
    try:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    except OSError:
        return 0


def _space_needed(where: Path, folder: Path | None) -> str:
    """' It needs about 250 MB ...': the previous copy's size (else the partial copy's), and the
    space free on that disk."""
    if folder is None:
        return ""
    previous = folder_bytes(folder) if folder.is_dir() else 0
    partial = folder_bytes(folder.with_name(folder.name + ".tmp"))
    try:
        free = f"; {shutil.disk_usage(where).free / 1e6:.1f} MB are free there"
    except OSError:
        free = ""
    if previous:
        return f" It needs about {previous / 1e6:.1f} MB (the size of the previous copy){free}."
    if partial:
        return f" It needs more than {partial / 1e6:.1f} MB (written before the failure){free}."
    return ""

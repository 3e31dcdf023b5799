"""Finding runs in an outputs tree: every record and unfinished run (the report), or one
configuration's finished seeds (STILTs, dynamic sampling). Records are read by ``run_record``, the
only reader of ``result.json``. Imports neither torch nor transformers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mtlvsift.display import safe_text
from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import CONFIG_FILE, RESULT_FILE
from mtlvsift.names import METHODS
from mtlvsift.run_record import InvalidRecord, RunRecord, read_record

_SEED_FOLDER = re.compile(r"seed-[0-9]+")


@dataclass(frozen=True)
class InProgressRun:
    path: Path  # the run folder
    modified: float  # newest modification time of its files (seconds since the epoch)

    def age(self, now: float | None = None) -> str:
        """How long ago the run last wrote anything, e.g. '5 min ago'."""
        seconds = max(0.0, (time.time() if now is None else now) - self.modified)
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{int(seconds // size)} {unit} ago"
        return f"{int(seconds)} s ago"


@dataclass
class Discovery:
    root: Path
    records: list[RunRecord] = field(default_factory=list)
    in_progress: list[InProgressRun] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return sorted({r.model for r in self.records})


def discover(root: str | Path) -> Discovery:
    """Every run record and every unfinished run under ``root``, with one warning per bad file.

    Runs are looked for only where the trainer puts them, ``<root>/<model>/<method>/<name>/seed-<k>/``
    (and ``<root>/<method>/<name>/seed-<k>/``, where runs went before the model named a folder):
    whatever else lies in the tree (a stray result.json or config.json, copies, the report) is
    never read, and cannot hide the runs.
    """
    root = Path(root)
    found = Discovery(root=root)
    if not root.is_dir():
        return found
    for method in METHODS:
        for folder in [*root.glob(f"*/{method}/*/seed-*"), *root.glob(f"{method}/*/seed-*")]:
            if not _SEED_FOLDER.fullmatch(folder.name):
                continue
            try:
                if (folder / RESULT_FILE).is_file():
                    found.records.append(read_record(folder / RESULT_FILE))
                elif (folder / CONFIG_FILE).is_file():
                    found.in_progress.append(InProgressRun(folder, _newest_mtime(folder)))
            except InvalidRecord as err:  # a folder's name may hold control characters
                found.warnings.append(safe_text(f"skipped {folder / RESULT_FILE}: {err}"))
            except OSError as err:  # a folder we may not read
                found.warnings.append(safe_text(f"skipped {folder}: cannot be read ({err})"))
    found.records.sort(key=lambda r: str(r.path))
    found.in_progress.sort(key=lambda r: str(r.path))
    found.warnings.sort()
    return found


def require_records(found: Discovery) -> None:
    """Raise the one clear error for an outputs folder without any finished run."""
    if found.records:
        return
    where = found.root.resolve()
    if not found.root.is_dir():
        lead = f"No outputs folder at {where}."
    else:
        lead = f"No run records (result.json) under {where}."
        if found.in_progress:
            lead += f" {len(found.in_progress)} run(s) have started but not finished."
    raise MtlvsiftError(
        f"{lead} Train runs first, e.g. `accelerate launch --quiet scripts/train_stilts.py --target rte "
        f"--seed 0` (or train_mtl.py / train_mtl_all.py), or point --outputs at the folder "
        f"that holds them."
    )


def _newest_mtime(folder: Path) -> float:
    times = []
    for path in folder.iterdir():
        try:
            times.append(path.stat().st_mtime)
        except OSError:  # a file removed while we looked
            pass
    return max(times, default=time.time())



def finished_runs(folders: Iterable[str | Path], model: str) -> list[RunRecord]:
    """The records ``<folder>/result.json`` of one model among the run folders ``folders``
    (one configuration's seeds). A damaged one is an error: a run that reads them (STILTs,
    dynamic sampling) must not silently use fewer seeds."""
    records = []
    for result in (Path(folder) / RESULT_FILE for folder in folders):
        if not result.is_file():
            continue
        try:
            record = read_record(result)
        except InvalidRecord as err:
            raise MtlvsiftError(f"{result} is not a valid run record ({err}). Train that run "
                                f"again (its command with --overwrite), or move its folder away.")
        if record.model == model:
            records.append(record)
    return records

"""The reproduction's stand-in GLUE folder: each task's training file cut to a seeded fraction of
its rows (file order kept, SST-2 capped first) and its dev file to its first rows, so that
``bench.reproduce`` fits a time budget and the tasks keep the order of their sizes.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

SST2_CAP = 10_000  # SST-2's 67,349 rows are cut to this first: its runs would take most of a budget
MIN_ROWS = 16  # fewest training rows a task keeps


@lru_cache(maxsize=None)
def source_rows(path: Path, has_header: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(header lines, rows) of a GLUE file, blank lines left out."""
    from mtlvsift.errors import MtlvsiftError

    if not path.is_file():
        raise MtlvsiftError(f"{path} is missing: the reproduction needs the train and dev files of "
                            f"its tasks (--data-dir).")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True) if line.strip()]
    return tuple(lines[: int(has_header)]), tuple(lines[int(has_header):])


def kept_rows(rows: int, fraction: float, cap: int | None = None) -> int:
    return min(rows, max(MIN_ROWS, round(min(rows, cap or rows) * fraction)))


def reproduction_glue(source: Path, dest: Path, tasks: tuple[str, ...], fraction: float,
                      max_dev_rows: int | None) -> dict[str, int]:
    """The tasks' training files cut to a seeded ``fraction`` of their rows (SST-2's capped at
    SST2_CAP first; file order kept) and their dev files to the first ``max_dev_rows``; returns
    the training rows per task."""
    import random

    from mtlvsift.tasks import get_task

    sizes = {}
    for name in tasks:
        task = get_task(name)
        (dest / task.folder).mkdir(parents=True, exist_ok=True)
        header, rows = source_rows(source / task.folder / "train.tsv", task.has_header)
        keep = kept_rows(len(rows), fraction, SST2_CAP if name == "sst2" else None)
        chosen = sorted(random.Random(f"{name}-{keep}").sample(range(len(rows)), keep))
        (dest / task.folder / "train.tsv").write_text("".join(header + tuple(rows[i] for i in chosen)),
                                                      encoding="utf-8")
        header, rows = source_rows(source / task.folder / "dev.tsv", task.has_header)
        (dest / task.folder / "dev.tsv").write_text("".join(header + rows[:max_dev_rows]), encoding="utf-8")
        sizes[name] = keep
    return sizes

"""A grid run's paths made absolute once, against the folder the grid was started from: its
``--jobs`` processes run in the repository and its emitted scripts ``cd`` there, so a relative
``--output-dir``, ``--data-dir``, ``--task-file``, ``--init-from`` or ``--single-scores`` would
otherwise point into the repository (or nowhere)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mtlvsift.grid.plan import GridRun

# The TrainConfig fields that hold a path given on the command line (task_files: a list).
PATH_FIELDS = ("output_dir", "data_dir", "init_from", "single_scores_file")


def absolute_path(path: str, cwd: Path) -> str:
    """``path`` (``~`` expanded) against ``cwd``, normalised; an absolute path stays as it is."""
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def resolved_run(run: GridRun, cwd: Path | None = None) -> GridRun:
    """``run`` with every path of its config absolute against ``cwd`` (default: this process's
    folder), so its ``args()`` and ``command()`` mean the same from any folder. The output folder
    is always given then: the default ``outputs`` is relative too."""
    cwd = Path.cwd() if cwd is None else cwd
    config = run.config
    changes = {name: absolute_path(getattr(config, name), cwd) for name in PATH_FIELDS
               if getattr(config, name)}
    changes["task_files"] = [absolute_path(p, cwd) for p in config.task_files]
    return dataclasses.replace(run, config=dataclasses.replace(config, **changes))

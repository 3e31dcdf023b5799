"""A grid run's paths made absolute once, against the folder the grid was started from: its
``--jobs`` processes run in the repository and its emitted scripts ``cd`` there, so a relative
``--output-dir``, ``--data-dir``, ``--task-file``, ``--init-from`` or ``--single-scores`` would
otherwise point into the repository (or nowhere)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mtlvsift.grid.plan import GridRun
from mtlvsift.run_options import OPTIONS


def absolute_path(path: str, cwd: Path) -> str:
    """``path`` (``~`` expanded) against ``cwd``, normalised; an absolute path stays as it is."""
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def resolved_run(run: GridRun, cwd: Path | None = None) -> GridRun:
    """``run`` with every path of its config absolute against ``cwd`` (default: this process's
    folder), so its ``args()`` and ``command()`` mean the same from any folder. The output folder
    is always given then: the default ``outputs`` is relative too."""
    cwd = Path.cwd() if cwd is None else cwd
    options = dict(run.config.options)
    for opt in OPTIONS:
        value = options.get(opt.name)
        if opt.kind == "path" and value:
            options[opt.name] = ([absolute_path(p, cwd) for p in value] if opt.multiple
                                 else absolute_path(value, cwd))
    return dataclasses.replace(run, config=dataclasses.replace(run.config, options=options))

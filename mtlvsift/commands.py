"""The shell command that makes a run, and the loop over seeds: built here and nowhere else.

Every command the project prints for the user to copy (a missing prerequisite, the report's
missing runs, ``missing.sh``, the grid's commands and scripts) comes from ``train_command``, so
they all look alike and quote alike; which options a command gives, and how each prints, is the
option's declaration (``run_options``). Imports neither torch nor transformers.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from mtlvsift import run_options
from mtlvsift.names import DEFAULT_OUTPUTS, DEFAULT_SEEDS, METHODS, SCRIPTS
from mtlvsift.tasks import GLUE_TASK_NAMES

_TASK_NAME = re.compile(r"[a-z0-9_]{1,64}")
# MTL_All's task list (``--tasks a,b``): the script's own option, not a run option.
TASKS = "tasks"


def train_args(method: str, target: str | None = None, support: Sequence[str] = (),
               options: Mapping[str, Any] | None = None) -> list[str]:
    """``[scripts/<script>, --target, T, --support, S, --opt, value, ...]``, no seed.

    ``options`` maps run options (``run_options``: ``max_train_examples``) to values, printed as
    each option prints (None left out); ``tasks`` is MTL_All's ``--tasks``.
    """
    if method not in SCRIPTS:
        raise ValueError(f"unknown method {method!r}")
    args = [f"scripts/{SCRIPTS[method]}"]
    if target:
        args += ["--target", target]
    for task in support:
        args += ["--support", task]
    for name, value in (options or {}).items():
        if value is None:
            continue
        args += ["--tasks", str(value)] if name == TASKS else run_options.command_args(name, value)
    return args


def train_command(method: str, target: str | None = None, support: Sequence[str] = (),
                  options: Mapping[str, Any] | None = None,
                  seeds: Sequence[int] = DEFAULT_SEEDS) -> str:
    """``accelerate launch --quiet scripts/<script> --target T --support S --opt value ... --seed k``
    (``train_args``); several seeds give ``for seed in ...; do ... --seed $seed; done``."""
    # --quiet: a failed run ends with its own Error: line, not accelerate's traceback after it.
    line = "accelerate launch --quiet " + shlex.join(train_args(method, target, support, options))
    seeds = [int(s) for s in seeds]
    if len(seeds) == 1:
        return f"{line} --seed {seeds[0]}"
    return f"for seed in {' '.join(map(str, seeds))}; do {line} --seed $seed; done"


def command_options(method: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The options (``train_command``'s mapping) that make the run whose resolved config is
    ``config`` (a ``TrainConfig.as_dict()``, or a run record's ``config``): every option that
    applies to the method and differs from its default, MTL_All's task list unless it is GLUE's
    nine. Read from disk, ``config`` is untrusted: a value of the wrong type raises
    ``ValueError`` (the command then goes to a shell script, quoted, but never invented)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    options = run_options.command_values(method, config)
    if options.get("output_dir", "").rstrip("/") == DEFAULT_OUTPUTS:
        del options["output_dir"]
    if method == "mtl_all":
        tasks = config.get(TASKS) or []
        if not isinstance(tasks, list) or not all(isinstance(t, str) and _TASK_NAME.fullmatch(t)
                                                  for t in tasks):
            raise ValueError(f"config field 'tasks' holds {str(tasks)[:40]!r}")
        if sorted(tasks) != sorted(GLUE_TASK_NAMES):
            options[TASKS] = ",".join(tasks)
    return options


def run_args(config: Mapping[str, Any], overwrite: bool = False, retrain_stale: bool = False) -> list[str]:
    """The script and arguments that make the run of ``config`` again (its seed included);
    ``overwrite`` / ``retrain_stale``: what the run does with a folder that holds another run."""
    method = config["method"]
    options = {**command_options(method, config), **_replacing(method, config, overwrite, retrain_stale)}
    return [*train_args(method, config.get("target"), config.get("support") or (), options),
            "--seed", str(config["seed"])]


def run_command(config: Mapping[str, Any], seeds: Sequence[int], overwrite: bool = False,
                retrain_stale: bool = False) -> str:
    """``train_command`` for the runs of ``config``'s identity over ``seeds``."""
    method = config["method"]
    options = {**command_options(method, config), **_replacing(method, config, overwrite, retrain_stale)}
    return train_command(method, config.get("target"), config.get("support") or (), options, seeds)


def _replacing(method: str, config: Mapping[str, Any], overwrite: bool, retrain_stale: bool) -> dict[str, bool]:
    """--overwrite, and --retrain-stale where the run reads single runs (never recorded options:
    a report's commands never replace runs)."""
    stale = retrain_stale and run_options.reads_single_runs(method, config)
    return {"overwrite": overwrite, **({"retrain_stale": True} if stale else {})}

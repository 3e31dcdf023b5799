"""The shell command that makes a run, and the loop over seeds: built here and nowhere else.

Every command the project prints for the user to copy (a missing prerequisite, the report's
missing runs, ``missing.sh``) comes from ``train_command``, so they all look alike and quote
alike. Imports neither torch nor transformers.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from mtlvsift.params import MAX_SEED
from mtlvsift.scores import is_number
from mtlvsift.tasks import GLUE_TASK_NAMES

DEFAULT_MODEL = "distilroberta-base"  # the paper's encoder
DEFAULT_OUTPUTS = "outputs"
DEFAULT_SEEDS = (0, 1, 2, 3, 4)  # five seeds, as many as the paper's
# The seeds of the authors' scripts (bin/glue/*); any five seeds give the same protocol.
AUTHORS_SEEDS = (42, 544460, 801760, 428404, 257803)
# ``standard``: this project's training protocol; ``original``: the authors' code (docs/fidelity.md).
PROTOCOLS = ("standard", "original")
DEFAULT_PROTOCOL = "standard"
SCRIPTS = {"single": "train_stilts.py", "stilts": "train_stilts.py", "mtl": "train_mtl.py",
           "mtl_all": "train_mtl_all.py"}


def train_args(method: str, target: str | None = None, support: Sequence[str] = (),
               options: Mapping[str, Any] | None = None) -> list[str]:
    """``[scripts/<script>, --target, T, --support, S, --opt, value, ...]``, no seed.

    ``options`` maps option names (``max_train_examples``) to values: None and False are left
    out, True is a flag, a list repeats the option (``--task-file A --task-file B``).
    """
    if method not in SCRIPTS:
        raise ValueError(f"unknown method {method!r}")
    args = [f"scripts/{SCRIPTS[method]}"]
    if target:
        args += ["--target", target]
    for task in support:
        args += ["--support", task]
    for name, value in (options or {}).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None or item is False:
                continue
            args.append("--" + name.replace("_", "-"))
            if item is not True:
                args.append(repr(item) if isinstance(item, float) else str(item))  # repr: exact
    return args


def train_command(method: str, target: str | None = None, support: Sequence[str] = (),
                  options: Mapping[str, Any] | None = None,
                  seeds: Sequence[int] = DEFAULT_SEEDS) -> str:
    """``accelerate launch scripts/<script> --target T --support S --opt value ... --seed k``
    (``train_args``); several seeds give ``for seed in ...; do ... --seed $seed; done``."""
    line = "accelerate launch " + shlex.join(train_args(method, target, support, options))
    seeds = [int(s) for s in seeds]
    if len(seeds) == 1:
        return f"{line} --seed {seeds[0]}"
    return f"for seed in {' '.join(map(str, seeds))}; do {line} --seed $seed; done"


# The options every train script takes that define a run, or say where it reads and writes,
# with their defaults: a printed command gives those that differ from them.
OPTION_DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL, "epochs": 10, "lr": 2e-5, "batch_size": 128, "max_seq_length": 128,
    "eval_every": 0.5, "warmup_ratio": 0.0, "weight_decay": 0.0, "max_train_examples": None,
    "data_seed": 0, "protocol": DEFAULT_PROTOCOL, "varlen_attention": False, "data_dir": None,
    "output_dir": DEFAULT_OUTPUTS, "task_files": [],
}
SAMPLING_DEFAULTS = {"mtl": "dynamic", "mtl_all": "size"}
# The options of one method's script beyond the shared ones (``support_seeds`` only where the run
# reads single runs: its config holds None otherwise).
METHOD_OPTIONS = {
    "single": (),
    "stilts": ("init_from", "target_fraction", "support_ratio", "support_seeds"),
    "mtl": ("sampling", "batching", "dynamic_rule", "single_scores_file", "target_fraction",
            "support_ratio", "support_seeds"),
    "mtl_all": ("tasks", "sampling", "batching", "dynamic_rule", "single_scores_file",
                "support_seeds"),
}
# A config field whose option is spelled otherwise.
_OPTION_NAMES = {"task_files": "task_file", "single_scores_file": "single_scores"}
_INTS = {"epochs", "batch_size", "max_seq_length", "max_train_examples", "data_seed"}
_FLOATS = {"lr", "eval_every", "warmup_ratio", "weight_decay", "target_fraction", "support_ratio"}
_TASK_NAME = re.compile(r"[a-z0-9_]{1,64}")


def run_options(method: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The options (``train_command``'s mapping) that make the run whose resolved config is
    ``config`` (a ``TrainConfig.as_dict()``, or a run record's ``config``): every option that
    defines the run and differs from its default, with ``--data-dir``, ``--output-dir`` and
    ``--task-file`` as given. Read from disk, ``config`` is untrusted: a value of the wrong type
    raises ``ValueError`` (the command then goes to a shell script, quoted, but never invented).
    """
    if method not in METHOD_OPTIONS:
        raise ValueError(f"unknown method {method!r}")
    options: dict[str, Any] = {}
    for key in (*OPTION_DEFAULTS, *METHOD_OPTIONS[method]):
        value = _checked(key, config.get(key))
        default = OPTION_DEFAULTS.get(key)
        if key == "sampling":
            default = SAMPLING_DEFAULTS[method]
        elif key == "batching":
            default = "heterogeneous"
        elif key == "dynamic_rule":
            default = None if config.get("sampling") != "dynamic" else "softmax"
        elif key == "support_seeds" and value is not None:
            value = None if tuple(value) == DEFAULT_SEEDS else " ".join(map(str, value))
        elif key == "tasks":
            value = None if sorted(value or []) == sorted(GLUE_TASK_NAMES) else ",".join(value or [])
        elif key == "output_dir" and value is not None:
            value = None if value.rstrip("/") == DEFAULT_OUTPUTS else value
        if value is None or value == default or value == []:
            continue
        options[_OPTION_NAMES.get(key, key)] = list(value) if isinstance(value, tuple) else value
    return options


def run_command(method: str, target: str | None, support: Sequence[str],
                config: Mapping[str, Any], seeds: Sequence[int]) -> str:
    """``train_command`` for the runs of ``config``'s identity over ``seeds``."""
    return train_command(method, target, support, run_options(method, config), seeds)


def _checked(key: str, value: Any) -> Any:
    """``value`` if it is what a trainer writes for ``key`` (None when absent), else ValueError."""
    if value is None:
        return None
    bad = ValueError(f"config field {key!r} holds {type(value).__name__} {str(value)[:40]!r}")
    if key in _INTS:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
            raise bad
    elif key in _FLOATS:
        if not is_number(value):
            raise bad
        value = float(value)
    elif key == "varlen_attention":
        if not isinstance(value, bool):
            raise bad
    elif key in ("task_files", "tasks", "support_seeds"):
        if not isinstance(value, list) or not all(_item_ok(key, v) for v in value):
            raise bad
    elif not isinstance(value, str) or not value or not value.isprintable():
        raise bad
    elif key in ("protocol", "sampling", "batching", "dynamic_rule") and not _TASK_NAME.fullmatch(value):
        raise bad
    return value


def _item_ok(key: str, value: Any) -> bool:
    if key == "support_seeds":
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED
    if key == "tasks":
        return isinstance(value, str) and bool(_TASK_NAME.fullmatch(value))
    return isinstance(value, str) and bool(value) and value.isprintable()

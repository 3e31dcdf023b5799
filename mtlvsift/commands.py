"""The shell command that makes a run, and the loop over seeds: built here and nowhere else.

Every command the project prints for the user to copy (a missing prerequisite, the report's
missing runs, ``missing.sh``) comes from ``train_command``, so they all look alike and quote
alike. Imports neither torch nor transformers.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

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


def train_command(method: str, target: str | None = None, support: Sequence[str] = (),
                  options: Mapping[str, Any] | None = None,
                  seeds: Sequence[int] = DEFAULT_SEEDS) -> str:
    """``accelerate launch scripts/<script> --target T --support S --opt value ... --seed k``.

    ``options`` maps option names (``max_train_examples``) to values: None and False are left
    out, True is a flag, a list repeats the option (``--task-file A --task-file B``). Several
    seeds give ``for seed in ...; do ... --seed $seed; done``.
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
                args.append(f"{item:g}" if isinstance(item, float) else str(item))
    line = "accelerate launch " + " ".join(shlex.quote(a) for a in args)
    seeds = [int(s) for s in seeds]
    if len(seeds) == 1:
        return f"{line} --seed {seeds[0]}"
    return f"for seed in {' '.join(map(str, seeds))}; do {line} --seed $seed; done"

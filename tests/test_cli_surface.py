"""What a user types does not change by accident: every script's options (names, flags, defaults,
types, help's first words) against the list pinned in tests/data/cli_surface.json.

Regenerate the pin deliberately, after a change to the command line that is meant:
``python tests/test_cli_surface.py > tests/data/cli_surface.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import REPO_ROOT, load_script  # noqa: E402

SCRIPTS = ("train_stilts", "train_mtl", "train_mtl_all", "run_grid", "compare", "predict", "recommend")
PIN = REPO_ROOT / "tests" / "data" / "cli_surface.json"


def _default(param: click.Parameter):
    value = param.default
    if callable(value):
        value = "<callable>"
    if isinstance(value, tuple):
        value = list(value)
    if value is not None and not isinstance(value, (str, int, float, bool, list)):
        value = f"<{type(value).__name__}>"  # click's UNSET sentinel
    return value


def _type(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return "choice:" + ",".join(map(str, kind.choices))
    return type(kind).__name__ + (f":{kind!r}" if isinstance(kind, (click.IntRange, click.FloatRange)) else "")


def command_surface(command: click.Command) -> dict:
    surface = {"params": [{
        "name": p.name, "opts": list(p.opts), "secondary_opts": list(p.secondary_opts),
        "default": _default(p), "required": p.required, "multiple": p.multiple,
        "is_flag": bool(getattr(p, "is_flag", False)), "type": _type(p),
        "show_default": getattr(p, "show_default", None),
        "help": " ".join((getattr(p, "help", None) or "").split()[:6]),
    } for p in command.params]}
    if isinstance(command, click.Group):
        surface["commands"] = {name: command_surface(sub) for name, sub in sorted(command.commands.items())}
    return surface


def surface() -> dict:
    return {name: command_surface(load_script(name).main) for name in SCRIPTS}


def test_every_scripts_options_are_the_pinned_ones():
    pinned = json.loads(PIN.read_text())
    now = json.loads(json.dumps(surface()))
    assert now.keys() == pinned.keys()
    for script in SCRIPTS:
        assert now[script] == pinned[script], f"scripts/{script}.py's options changed"


if __name__ == "__main__":
    print(json.dumps(surface(), indent=1))

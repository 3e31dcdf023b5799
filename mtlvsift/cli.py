"""The scripts' click options, made from the one declaration of each run option
(``run_options.OPTIONS``), plus the few options that are a script's own (the task options,
``--dry-run``, ``--plan-json``, ``--restart``).

Imports neither torch nor transformers: ``--help`` and an option error answer at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from mtlvsift import run_options
from mtlvsift.params import SEED, FiniteFloatRange, MAX_SEED
from mtlvsift.run_options import Option
from mtlvsift.tasks import GLUE_TASKS, user_task_names

# The methods each train script makes.
SCRIPT_METHODS = {"train_stilts": ("single", "stilts"), "train_mtl": ("mtl",), "train_mtl_all": ("mtl_all",)}


def seed_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    """A click callback: ``0 1 2`` or ``0,1,2`` -> (0, 1, 2), distinct seeds from 0 to 2**32 - 1."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):  # a default already parsed
        return tuple(value)
    try:
        seeds = tuple(int(s) for s in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of seeds such as '0 1 2 3 4'.") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise click.BadParameter(f"{value!r}: give distinct seeds from 0 to {MAX_SEED}, e.g. '0 1 2 3 4'.")
    return seeds


def _register_task_files(ctx: click.Context, param: click.Parameter, paths: tuple[str, ...]) -> list[str]:
    """Parse the task files when the option is read, so that --target, --support and --tasks can
    name their tasks; the absolute paths are kept in the run's config."""
    from mtlvsift.train.data.task_files import load_task_files

    load_task_files(paths)
    return [str(Path(p).expanduser().resolve()) for p in paths]


def _check_trackers(ctx: click.Context, param: click.Parameter, names: tuple[str, ...]) -> list[str]:
    if not names:
        return []
    from mtlvsift.train.trackers import check_trackers  # accelerate: only when one is asked for

    return check_trackers(names)


_CALLBACKS = {"task_files": _register_task_files, "trackers": _check_trackers,
              "seeds": seed_list}


def _click_type(opt: Option) -> Any:
    low, high = opt.bounds
    if opt.kind == "int":
        return SEED if (low, high) == (0, MAX_SEED) else click.IntRange(low, high)
    if opt.kind == "float":
        return FiniteFloatRange(low, high, min_open=opt.open_bounds[0], max_open=opt.open_bounds[1])
    if opt.kind == "choice":
        return click.Choice(opt.choices, case_sensitive=False)
    if opt.kind == "path":
        return click.Path(exists=opt.exists, file_okay=opt.file is not False, dir_okay=opt.file is not True)
    return None  # text, seeds: strings


def click_option(opt: Option, method: str | None = None, help: str | None = None) -> Callable:
    """The click option of one run option (its default for ``method`` where methods differ;
    ``help``: another script's own words for it)."""
    kwargs: dict[str, Any] = {"help": help or opt.help}
    if opt.is_flag and "/" not in opt.flag:
        kwargs["is_flag"] = True
    else:
        default = opt.default_for(method) if method else opt.default
        if opt.kind == "seeds" and default is not None:
            default = " ".join(map(str, default))
        if not opt.multiple:
            kwargs["default"] = default
        if default is not None and not opt.multiple:
            kwargs["show_default"] = True
    if opt.multiple:
        kwargs["multiple"] = True
    kind = _click_type(opt)
    if kind is not None:
        kwargs["type"] = kind
    if opt.callback:
        kwargs["callback"] = _CALLBACKS[opt.callback]
    if opt.callback == "task_files":
        kwargs["is_eager"] = True  # before --help: the task options list its tasks
    return click.option(opt.flag, opt.name, **kwargs)


def _apply(decorators: list[Callable]) -> Callable:
    def decorate(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return decorate


def script_options(script: str) -> Callable:
    """Every run option a train script's methods take, in the schema's order (read when the
    script is loaded, so an option added to the schema appears without another edit)."""
    methods = SCRIPT_METHODS[script]
    chosen = [o for o in run_options.OPTIONS if set(o.methods) & set(methods)]
    return _apply([click_option(o, methods[-1]) for o in chosen])


def grid_options(exclude: tuple[str, ...] = ()) -> Callable:
    """The run options run_grid.py passes on to every run they apply to."""
    return _apply([click_option(o) for o in run_options.OPTIONS if o.grid and o.name not in exclude])


def named_option(name: str, method: str | None = None, help: str | None = None) -> Callable:
    """One run option, placed by a script itself (run_grid's --target-fraction, predict.py's
    --data-dir, whose default differs: ``help`` says how)."""
    return click_option(run_options.option(name), method, help)


class TaskOption(click.Option):
    """An option naming tasks, whose help lists the names accepted: GLUE's nine and the tasks of
    the task files given before --help (``--task-file FILE --help``)."""

    def __init__(self, *args, task_help: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.task_help = task_help

    def get_help_record(self, ctx: click.Context):
        names = [t.display for t in GLUE_TASKS.values()] + user_task_names()
        others = "" if user_task_names() else " (or a task of a --task-file given before --help)"
        self.help = f"{self.task_help} Tasks: {', '.join(names)}{others}."
        return super().get_help_record(ctx)


def task_option(*names: str, help: str, **kwargs) -> Callable:
    """A --target/--support/--tasks option: ``help`` says what it is, the task names follow."""
    return click.option(*names, cls=TaskOption, task_help=help, **kwargs)


plan_options = _apply([
    click.option("--dry-run", is_flag=True,
                 help="Resolve and print the run's plan (sizes, quotas, batches, steps, start "
                      "model); train nothing, write nothing."),
    click.option("--plan-json", default=None, type=click.Path(dir_okay=False),
                 help="Write the plan as JSON to this file (implies --dry-run)."),
])

restart_option = click.option(
    "--restart", is_flag=True,
    help="Discard the saved state of this unfinished run (e.g. a damaged one) and train it from scratch.")

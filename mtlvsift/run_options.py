"""Every option of a run, declared once: its flag, type, default, help, the methods it applies to,
whether it is part of the run's identity and of its folder name, and how it prints in a command.

Everything else is derived from ``OPTIONS``: the click options of the three train scripts and of
``run_grid.py`` (``mtlvsift/cli.py``), a run's resolved options and identity
(``train/config.py``), its folder suffix, the command that makes it again (``commands.py``), and
the check of a value read back from a run record. Adding an option is one entry here (and the
code that uses its value). Imports neither click nor torch: the types are named (``kind``) and
turned into click types by ``cli.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from mtlvsift.names import (BATCHINGS, DEFAULT_MODEL, DEFAULT_OUTPUTS, DEFAULT_PROTOCOL, DEFAULT_SEEDS,
                            DYNAMIC_RULES, MAX_COUNT, MAX_SEED, METHODS, MTL_EPOCHS, PROTOCOLS, SAMPLINGS,
                            SELECTION_SPLITS,
                            TRACKERS)

MAX_VALUE = MAX_SEED  # the largest whole number a record may hold for an option
# Epochs far beyond any real run (the paper: 10); a plan lists every epoch, so this bounds it.
MAX_EPOCHS = 10_000
MULTI_TASK = ("mtl", "mtl_all")
SIZE_EXPERIMENT = ("stilts", "mtl")
# The option run_grid.py --until-decided sets on the seeds it adds (the report reads it back).
ADDED_UNTIL_DECIDED = "added_until_decided"


def reads_single_runs(method: str, values: Mapping[str, Any]) -> bool:
    """Whether a run reads finished single runs: STILTs (its start model, unless --init-from) and
    dynamic sampling (the single-task scores, unless --single-scores gives them)."""
    if method == "stilts":
        return values.get("init_from") is None
    return (method in MULTI_TASK and values.get("sampling") == "dynamic"
            and not values.get("single_scores_file"))


@dataclass(frozen=True)
class Option:
    name: str  # the config field and click parameter: eval_every
    flag: str  # --eval-every; an on/off pair: --packing/--no-packing
    # How a value is typed and checked: int (a range: bounds), float (finite, in bounds), bool
    # (a flag), text, path (an existing path where ``exists``), choice (of ``choices``), seeds
    # (a list of seeds), and a list of the kind with ``multiple``.
    kind: str
    default: Any = None  # a value, or {method: value} where methods differ
    help: str | None = None
    methods: tuple[str, ...] = METHODS  # the methods whose runs take it (else: an error)
    identity: bool = True  # part of what a run computes (config.json, the record's pooling)
    suffix: str | None = None  # in the folder name when not its default: n -> rte__n-2000
    command: bool = True  # given in a printed command where it differs from its default
    grid: bool = True  # run_grid.py takes it and passes it on to each run it applies to
    bounds: tuple[float | None, float | None] = (None, None)  # int and float ranges, inclusive
    open_bounds: tuple[bool, bool] = (False, False)  # (min, max) excluded from a float range
    choices: tuple[str, ...] = ()
    multiple: bool = False  # repeatable: a list of values
    exists: bool = False  # a path that must exist (checked by click)
    file: bool | None = None  # a path: True a file, False a folder, None either
    callback: str | None = None  # what cli.py runs on the value: task_files, trackers, seeds
    # Used only when this holds of the run's other values (else its value is None: unused, as
    # --dynamic-rule under size sampling, never part of the identity).
    when: Callable[[str, Mapping[str, Any]], bool] | None = None

    @property
    def is_flag(self) -> bool:
        return self.kind == "bool"

    def default_for(self, method: str) -> Any:
        if isinstance(self.default, dict):
            return self.default.get(method)
        return self.default

    def applies(self, method: str, values: Mapping[str, Any]) -> bool:
        return method in self.methods and (self.when is None or self.when(method, values))


OPTIONS: tuple[Option, ...] = (
    Option("init_from", "--init-from", "path", methods=("stilts",), exists=True, file=False,
           grid=False, help="STILTs from this saved model folder instead of the best supporting run."),
    Option("sampling", "--sampling", "choice", choices=SAMPLINGS, methods=MULTI_TASK, grid=False,
           default={"mtl": "dynamic", "mtl_all": "size"}, suffix="sampling"),
    Option("batching", "--batching", "choice", choices=BATCHINGS, methods=MULTI_TASK,
           default="heterogeneous", suffix="batching"),
    Option("dynamic_rule", "--dynamic-rule", "choice", choices=DYNAMIC_RULES, methods=MULTI_TASK,
           default="softmax", suffix="rule", when=lambda m, v: v.get("sampling") == "dynamic",
           help="softmax of the gaps (the paper's code) or normalised gaps (Gottumukkala et al.)."),
    Option("temperature", "--temperature", "float", default=2.0, bounds=(0, 1000),
           open_bounds=(True, False), methods=MULTI_TASK, suffix="temp",
           when=lambda m, v: v.get("sampling") == "temperature",
           help="Temperature sampling's T: p_i proportional to n_i^(1/T) (1: size sampling; a "
                "large T tends to uniform)."),
    Option("mtl_epoch", "--mtl-epoch", "choice", choices=MTL_EPOCHS, default="sum", methods=("mtl",),
           suffix="epoch",
           help="Standard protocol: an epoch of all tasks' rows (sum), or as many as show the "
                "target its training set once at the epoch's probabilities (target)."),
    Option("max_passes", "--max-passes", "float", bounds=(0, MAX_COUNT), open_bounds=(True, False),
           methods=MULTI_TASK, suffix="passes",
           help="Standard protocol: show no task more than this many passes over its data in an "
                "epoch (the rows over the cap go to the other tasks; off by default)."),
    Option("single_scores_file", "--single-scores", "path", methods=MULTI_TASK, file=True,
           identity=False, grid=False,
           when=lambda m, v: v.get("sampling") == "dynamic",
           help="JSON {task: single-task dev score in [0,1]} for dynamic sampling (default: the "
                "mean of the finished single runs)."),
    Option("target_fraction", "--target-fraction", "float", bounds=(0, 1), open_bounds=(True, False),
           methods=SIZE_EXPERIMENT, suffix="tf", grid=False,
           help="Size experiment: train on this fraction of the target's training set."),
    Option("support_ratio", "--support-ratio", "float", bounds=(0, 1000), open_bounds=(True, False),
           methods=SIZE_EXPERIMENT, suffix="sr", grid=False,
           help="Size experiment: subsample each supporting task to K x the target's size."),
    # Checkpoint selection apart from the reported scores (train/data/holdout.py, train/selection.py).
    Option("select_on", "--select-on", "choice", choices=SELECTION_SPLITS, default="dev", suffix="select",
           help="Select the best checkpoint (and, under dynamic sampling, compute the current scores) "
                "on dev (the paper's) or on a held-out part of each task's training set; either way "
                "the dev score of the selected checkpoint is reported."),
    Option("holdout_fraction", "--holdout-fraction", "float", default=0.1, bounds=(0, 1),
           open_bounds=(True, True), suffix="ho", when=lambda m, v: v.get("select_on") == "holdout",
           help="--select-on holdout: the fraction of each task's training set held out (a fixed, "
                "seed-independent, label-stratified part), carved before any subsampling."),
    Option("task_files", "--task-file", "path", multiple=True, exists=True, file=True,
           identity=False, callback="task_files",
           help="A YAML or JSON file defining your own tasks (repeat for several); see the README."),
    Option("model", "--model", "text", default=DEFAULT_MODEL,
           help="Hugging Face hub id, local folder, or 'minilm' (offline MiniLM package)."),
    Option("seed", "--seed", "int", default=0, bounds=(0, MAX_VALUE), command=False, grid=False,
           help="Training seed (heads' initialisation, dropout, batch order); the paper loops over "
                "five from the shell."),
    Option("epochs", "--epochs", "int", default=10, bounds=(1, MAX_EPOCHS),
           help="Passes over the training data (MTL: over all tasks' examples together)."),
    Option("lr", "--lr", "float", default=2e-5, bounds=(0, None), open_bounds=(True, False),
           help="Peak learning rate of AdamW (linear schedule, decaying to 0)."),
    Option("batch_size", "--batch-size", "int", default=128, bounds=(1, MAX_COUNT),
           help="Global batch size (over all processes and accumulation steps)."),
    Option("grad_accum", "--grad-accum", "int", default=1, bounds=(1, MAX_COUNT), identity=False,
           help="Split each process's share of a batch into this many micro-batches."),
    Option("max_seq_length", "--max-seq-length", "int", default=128, bounds=(8, MAX_COUNT)),
    Option("eval_every", "--eval-every", "float", default=0.5, bounds=(0, 1), open_bounds=(True, False),
           help="Evaluate and checkpoint every this fraction of an epoch."),
    Option("warmup_ratio", "--warmup-ratio", "float", default=0.0, bounds=(0, 1),
           help="Linear warm-up over this fraction of all steps, then linear decay."),
    Option("weight_decay", "--weight-decay", "float", default=0.0, bounds=(0, None)),
    Option("eval_batch_size", "--eval-batch-size", "int", default=256, bounds=(1, MAX_COUNT),
           identity=False),
    Option("data_dir", "--data-dir", "path", file=False, identity=False,
           help="GLUE folder in the original layout (default: $MTLVSIFT_GLUE_DIR, else the hub)."),
    Option("output_dir", "--output-dir", "path", default=DEFAULT_OUTPUTS, file=False, identity=False),
    Option("max_train_examples", "--max-train-examples", "int", bounds=(1, MAX_COUNT), suffix="n",
           help="Cap every task's training set (a random subset, drawn with --data-seed)."),
    Option("data_seed", "--data-seed", "int", default=0, bounds=(0, MAX_VALUE), suffix="ds",
           help="Seed of every data subsample, independent of --seed."),
    Option("log_every", "--log-every", "int", default=10, bounds=(1, MAX_COUNT), identity=False,
           help="Read the loss back (and check it is finite) every this many steps."),
    Option("num_workers", "--num-workers", "int", default=0, bounds=(0, 256), identity=False,
           help="DataLoader worker processes."),
    Option("overwrite", "--overwrite", "bool", default=False, identity=False, command=False,
           help="Replace an existing run folder."),
    Option("keep_state", "--keep-state", "bool", default=False, identity=False,
           help="Keep the final accelerate state (state/) of a finished run; by default it is removed."),
    Option("compile_model", "--compile", "bool", default=False, identity=False,
           help="torch.compile the model."),
    Option("report_to", "--report-to", "choice", choices=TRACKERS, multiple=True, identity=False,
           callback="trackers",
           help="Also log losses, learning rate, examples/s, sampling probabilities and dev metrics "
                "to this tracker (repeat for several; off by default). TensorBoard writes into the "
                "run folder's tracking/."),
    Option("protocol", "--protocol", "choice", choices=PROTOCOLS, default=DEFAULT_PROTOCOL,
           suffix="protocol",
           help="standard: this project's; original: the authors' code (epoch until the first task "
                "runs out, sum of task means, heads shared by label count, ...; docs/fidelity.md)."),
    # Not identity: what the run read is (the start model, the single-task scores), so that a
    # grid grown by a seed keeps the runs whose start model did not change.
    Option("support_seeds", "--support-seeds", "seeds", default=DEFAULT_SEEDS, grid=False,
           when=reads_single_runs, callback="seeds", identity=False,
           help="Seeds of the single runs that STILTs (best of them) and dynamic sampling (their "
                "mean) read; all must be finished."),
    Option("retrain_stale", "--retrain-stale", "bool", default=False, identity=False, command=False,
           when=reads_single_runs,
           help="Train the run again if it is stale: its STILTs start model or its single-task "
                "scores changed since it ran (e.g. after more --support-seeds); a run with other "
                "options is still refused."),
    Option(ADDED_UNTIL_DECIDED, "--added-until-decided", "bool", default=False, identity=False,
           methods=("stilts", "mtl"), grid=False,
           help="Recorded only: run_grid.py --until-decided added this seed after looking at the "
                "cell's verdict (compare.py flags the cell: its test is sequential)."),
    Option("packing", "--packing/--no-packing", "bool", default=True, identity=False,
           help="Pack each batch's rows into one sequence of real tokens (BERT/RoBERTa-family "
                "encoders; others are padded). Changes speed, not results."),
    Option("varlen_attention", "--varlen-attention", "bool", default=False,
           help="Packed attention by torch's varlen flash kernel (CUDA, bf16/fp16); it has no "
                "dropout, so attention-probability dropout is off."),
)
# The suffix that leads a folder name and is not part of the record's ``variant``.
LEADING_SUFFIX = "protocol"
# The order of the other suffixes in a folder name (``rte--mnli__sampling-size_rule-...``), kept
# as it always was so that existing run folders are found; a suffix not listed comes last.
FOLDER_ORDER = ("sampling", "rule", "temp", "batching", "epoch", "passes", "n", "ds", "tf", "sr", "select",
                "ho")


def option(name: str) -> Option:
    for candidate in OPTIONS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def names() -> list[str]:
    return [o.name for o in OPTIONS]


def resolve(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value for a run of ``method``: those given (None: not given), the rest at
    their defaults, and None for the options that do not apply to it (so a run's identity never
    holds an option it does not use). An option given a value other than its default where it
    does not apply raises ``ValueError`` naming it."""
    unknown = set(given) - set(names())
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    values = _with_defaults(method, given)
    for o in OPTIONS:
        if method not in o.methods and not _is_default(o, method, given.get(o.name)):
            raise NotApplicable(o, method)
        if o.kind in ("text", "path") and values[o.name] is not None:
            for item in values[o.name] if o.multiple else [values[o.name]]:
                if not str(item).isprintable():
                    raise Unprintable(o, item)
        if not o.applies(method, values):  # offered, unused here (--dynamic-rule with size sampling)
            values[o.name] = None
    return values


def _with_defaults(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option: its value among ``given``, else its default for ``method``."""
    return {o.name: o.default_for(method) if given.get(o.name) is None else given[o.name]
            for o in OPTIONS}


def applicable(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options among ``given`` that apply to a run of ``method`` (the grid gives all of its
    options to every run; each run takes those that are its own)."""
    values = _with_defaults(method, given)
    return {o.name: given[o.name] for o in OPTIONS
            if o.name in given and o.applies(method, values)}


class OptionError(ValueError):
    """An option value no run takes (the message is for the user)."""


class Unprintable(OptionError):
    """A name or path with a control character (a tab, a newline): the run's folder, record
    and printed commands could not hold it."""

    def __init__(self, opt: Option, value: Any) -> None:
        super().__init__(f"{opt.flag.split('/')[0]} {str(value)!r} holds a control character (a "
                         f"tab, a newline, ...): the run's record and the commands that remake it "
                         f"could not name it. Choose a name or path without one.")


class NotApplicable(OptionError):
    """An option given to a run it does not apply to (a message for the user)."""

    def __init__(self, opt: Option, method: str) -> None:
        runs = ", ".join(_METHOD_WORDS[m] for m in opt.methods)
        super().__init__(f"{opt.flag.split('/')[0]} applies to {runs} runs only: leave it out of "
                         f"this {_METHOD_WORDS[method]} run.")
        self.option = opt


_METHOD_WORDS = {"single": "single-task", "stilts": "STILTs", "mtl": "pairwise MTL",
                 "mtl_all": "MTL_All"}


def _is_default(opt: Option, method: str, value: Any) -> bool:
    if value is None or value == [] or value == ():
        return True
    default = opt.default_for(method)
    if opt.kind == "seeds" and default is not None:
        return tuple(value) == tuple(default)
    return value == default or (opt.multiple and not value)


def identity_names() -> list[str]:
    return [o.name for o in OPTIONS if o.identity]


def folder_suffixes(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``{suffix key: value}`` of the options that name a folder and differ from their default,
    in the order the folder name shows them (the protocol's key included)."""
    named = [o for o in OPTIONS if o.suffix and not _is_default(o, method, values.get(o.name))]
    rank = {key: i for i, key in enumerate((LEADING_SUFFIX, *FOLDER_ORDER))}
    named.sort(key=lambda o: rank.get(o.suffix, len(rank)))
    return {o.suffix: values.get(o.name) for o in named}


def command_values(method: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The options a printed command gives for a run of ``method`` whose option values (a config
    or a record's ``config``, untrusted) are ``values``: those that apply and differ from their
    default. A value of the wrong type raises ``ValueError``: a command is never invented."""
    given = {}
    for o in OPTIONS:
        if not o.command or method not in o.methods:
            continue
        value = checked_value(o, values.get(o.name))
        if value is not None and not _is_default(o, method, value) and o.applies(method, values):
            given[o.name] = value
    return given


def command_args(name: str, value: Any) -> list[str]:
    """``--lr 3.3e-05``, ``--no-packing``, ``--task-file A --task-file B``, ``--support-seeds '0 1'``."""
    opt = option(name)
    on, _, off = opt.flag.partition("/")
    if opt.is_flag:
        return [on] if value else ([off] if off else [])
    if opt.kind == "seeds":
        return [on, " ".join(map(str, value))]
    items = value if opt.multiple else [value]
    args = []
    for item in items:
        args += [on, repr(item) if isinstance(item, float) else str(item)]  # repr: exact floats
    return args


def checked_value(opt: Option, value: Any) -> Any:
    """``value`` if it is what a trainer writes for ``opt`` (None when absent; lists as lists),
    else ``ValueError``: a record's config is read from disk."""
    if value is None:
        return None
    bad = ValueError(f"config field {opt.name!r} holds {type(value).__name__} {str(value)[:40]!r}")
    if opt.multiple or opt.kind == "seeds":
        if not isinstance(value, (list, tuple)):
            raise bad
        item_kind = "int" if opt.kind == "seeds" else opt.kind
        items = [_checked_item(opt, item_kind, v, bad) for v in value]
        return items
    return _checked_item(opt, opt.kind, value, bad)


def _checked_item(opt: Option, kind: str, value: Any, bad: ValueError) -> Any:
    low, high = opt.bounds if kind == opt.kind else (0, MAX_VALUE)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VALUE:
            raise bad
        if (low is not None and value < low) or (high is not None and value > high):
            raise bad
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if not isinstance(value, str) or not value or not value.isprintable():
        raise bad
    if kind == "choice" and value not in opt.choices:
        raise bad
    return value

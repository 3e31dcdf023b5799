"""One run's resolved configuration, and how each method (single, STILTs, MTL, MTL_All) fills it.

The scripts parse options and call ``stilts_config`` / ``mtl_config`` / ``mtl_all_config``; the
result says what the run computes and where its folder is. What a run needs from other runs (the
STILTs start model, the single-task scores of dynamic sampling) is resolved from the config by
``mtlvsift.train.prerequisites`` before training starts.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlvsift import run_options
from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import DEFAULT_PROTOCOL
from mtlvsift.run_folder import locate_run_folder, run_name, variant_suffix
from mtlvsift.tasks import GLUE_TASK_NAMES, get_task, get_tasks
from mtlvsift.train.data.holdout import holdout_size

# Fields resolved before training that say where a run started from, not what it computes.
RESOLVED_NOT_IDENTITY = ("init_model", "start_model", "single_scores_from")


@dataclass(frozen=True)
class TrainConfig:
    """What a run computes and where its folder is. ``options`` holds every run option's value
    (``run_options.OPTIONS``; None where the option does not apply to the method), read as
    attributes: ``config.lr``. Frozen: the resolved fields are filled by ``dataclasses.replace``."""

    method: str  # single | stilts | mtl | mtl_all
    tasks: list[str]  # canonical names; the target first (mtl_all: all its tasks)
    target: str | None
    support: list[str]
    name: str  # run folder name: target, target--support, all; with the protocol and variant suffix
    variant: str  # the variant within its protocol (what compare.py groups by)
    options: dict[str, Any]
    max_grad_norm: float = 1.0
    # Each task-file task of the run (target, support) -> its task file's sha256.
    task_definitions: dict[str, str] | None = None
    # Resolved before training (prerequisites.py, data/fingerprints.py).
    single_scores: dict[str, float] | None = None
    data_fingerprints: dict[str, dict[str, str]] | None = None  # task -> split -> file sha256
    single_scores_from: dict[str, Any] | None = None  # the single runs (or file) they came from
    start_model: dict[str, Any] | None = None  # STILTs: the supporting run started from
    init_model: str | None = None  # the encoder actually loaded first (STILTs: the supporting run's)

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options", {})  # (not self.options: no recursion)
        if name in options:
            return options[name]
        raise AttributeError(f"TrainConfig has no field or option {name!r}")

    @property
    def run_dir(self) -> Path:
        return locate_run_folder(self.output_dir, self.model, self.method, self.name, self.seed)

    def identity(self) -> dict[str, Any]:
        """What the run computes: a rerun with a different identity must not reuse its folder."""
        skip = {o.name for o in run_options.OPTIONS if not o.identity} | set(RESOLVED_NOT_IDENTITY)
        identity = {k: v for k, v in self.as_dict().items() if k not in skip}
        if not identity["task_definitions"]:  # GLUE runs keep the identity they had before
            del identity["task_definitions"]
        if identity["select_on"] == "dev":  # and so do runs that select on dev, as all did
            del identity["select_on"], identity["holdout_fraction"]
        if self.method == "stilts":  # the model it started from, not the seeds it was chosen from
            start = self.start_model
            identity["start_model"] = start and {k: start[k] for k in ("run", "seed", "score")}
        return identity

    def as_dict(self) -> dict[str, Any]:
        """Every field and option, flat (the record's ``config``)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        return copy.deepcopy({**fields, **self.options})


def folder_name(base: str, variant: str, protocol: str = DEFAULT_PROTOCOL) -> str:
    """``rte--mnli__protocol-original_sampling-size``: a non-default protocol leads the suffix."""
    lead = variant_suffix({"protocol": protocol if protocol != DEFAULT_PROTOCOL else None})
    return run_name(base, "_".join(part for part in (lead, variant) if part))


def task_definitions(names: list[str]) -> dict[str, str] | None:
    """The sha256 of the task file behind each task-file task among ``names`` (None: all GLUE)."""
    sources = {name: get_task(name).source for name in names}
    return {name: s.task_file_sha256 for name, s in sources.items() if s is not None} or None


def _build(method: str, tasks: list[str], support: list[str], base: str, given: Mapping[str, Any],
           lead: Mapping[str, Any] | None = None) -> TrainConfig:
    """The config of a run: options resolved for the method (one applied where it does not
    belong is an error), the folder name from the options that name it."""
    try:
        values = run_options.resolve(method, given)
    except run_options.OptionError as err:
        raise MtlvsiftError(str(err)) from None
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}  # as JSON reads it
    check_exposure_options(values)
    temperature = given.get("temperature")  # another T than the default, where it does not apply
    if temperature not in (None, run_options.option("temperature").default) and values["temperature"] is None:
        raise MtlvsiftError(f"--temperature {temperature:g} is temperature sampling's: "
                            f"add --sampling temperature, or leave it out.")
    suffixes = run_options.folder_suffixes(method, values)
    protocol = suffixes.pop(run_options.LEADING_SUFFIX, None) or DEFAULT_PROTOCOL
    variant = variant_suffix({**(lead or {}), **suffixes})
    return TrainConfig(method=method, tasks=tasks, target=tasks[0] if method != "mtl_all" else None,
                       support=support, name=folder_name(base, variant, protocol), variant=variant,
                       options=values, task_definitions=task_definitions(tasks))


def check_exposure_options(values: Mapping[str, Any]) -> None:
    """--mtl-epoch target and --max-passes shape the standard protocol's epochs (the original
    keeps the authors'); a cap needs the rows per task that only heterogeneous batches fix."""
    given = [flag for flag, on in (("--mtl-epoch target", values.get("mtl_epoch") == "target"),
                                   ("--max-passes", values.get("max_passes") is not None)) if on]
    if given and values.get("protocol") == "original":
        raise MtlvsiftError(f"{' and '.join(given)} set the standard protocol's epochs; "
                            f"--protocol original keeps the authors' epochs. Leave one out.")
    if values.get("max_passes") is not None and values.get("batching") == "homogeneous":
        raise MtlvsiftError("--max-passes caps each task's rows in an epoch, which homogeneous "
                            "batches (each batch's task drawn with p) cannot: use --batching "
                            "heterogeneous or leave --max-passes out.")


def stilts_config(target: str, support: str | None = None,
                  options: Mapping[str, Any] | None = None) -> TrainConfig:
    """``--target T`` alone: plain fine-tuning (single); with ``--support S``: STILTs (or with
    ``init_from`` in ``options``: STILTs from that model folder)."""
    given = dict(options or {})
    target_task = get_task(target)
    support_task = get_task(support) if support else None
    if support_task and support_task.name == target_task.name:
        raise MtlvsiftError(f"--support must differ from --target (both are {target_task.display}).")
    init_from = given.get("init_from")
    if given.get("support_ratio") is not None and support_task is None:
        raise MtlvsiftError("--support-ratio needs a supporting task (--support).")
    if support_task is None and init_from is None and given.get("target_fraction") is not None:
        raise MtlvsiftError("--target-fraction is for size experiments with --support.")
    method = "stilts" if (support_task or init_from) else "single"
    if support_task:
        base = f"{target_task.name}--{support_task.name}"
    else:
        base = f"{target_task.name}--init" if init_from else target_task.name
    support_names = [support_task.name] if support_task else []
    return _build(method, [target_task.name], support_names, base, given)


def mtl_config(target: str, support: Sequence[str], options: Mapping[str, Any] | None = None) -> TrainConfig:
    """Pairwise (or one-target, several-support) MTL."""
    if not support:
        raise MtlvsiftError("train_mtl.py needs at least one --support task.")
    tasks = [t.name for t in get_tasks([target, *support])]
    return _build("mtl", tasks, tasks[1:], "--".join(tasks), dict(options or {}))


def mtl_all_config(tasks: Sequence[str] = (), options: Mapping[str, Any] | None = None) -> TrainConfig:
    """All tasks jointly (the nine GLUE tasks when ``tasks`` is empty); each task's own best dev
    score is recorded."""
    names = [t.name for t in get_tasks(list(tasks) or list(GLUE_TASK_NAMES))]
    if len(names) < 2:
        raise MtlvsiftError("train_mtl_all.py needs at least two tasks.")
    custom = None if sorted(names) == sorted(GLUE_TASK_NAMES) else "+".join(names)
    return _build("mtl_all", names, [], "all", dict(options or {}), lead={"tasks": custom})


def single_config_like(config: TrainConfig, task: str, max_train_examples: int | None) -> TrainConfig:
    """The single run of ``task`` that shares ``config``'s options (the STILTs start model and
    dynamic sampling's scores come from such runs), with its own training cap."""
    single = [o.name for o in run_options.OPTIONS if "single" in o.methods]
    shared = {name: config.options[name] for name in single}
    return stilts_config(task, None, {**shared, "max_train_examples": max_train_examples})


def support_examples_needed(config: TrainConfig, target_available: int) -> int:
    """Size experiments: K x the target's used training size."""
    return max(1, round(config.support_ratio * target_train_size(config, target_available)))


def training_pool(config: TrainConfig, task: str, available: int) -> int:
    """The rows of a task's training file that training may draw from: all ``available``, less
    the held-out part under ``--select-on holdout`` (carved before any subsampling)."""
    if config.select_on != "holdout":
        return available
    return available - holdout_size(task, available, config.holdout_fraction)


def used_train_size(config: TrainConfig, task: str, available: int, target_available: int) -> int:
    """Training examples a task uses: capped, a fraction of the target, or K x the target's
    (``available``: the training file's rows; the held-out part is never among them)."""
    available = training_pool(config, task, available)
    capped = min(available, config.max_train_examples or available)
    if task != config.target and config.support_ratio is not None:
        size = support_examples_needed(config, target_available)
        if size > capped:
            raise MtlvsiftError(
                f"--support-ratio {config.support_ratio:g} needs {size} {get_task(task).display} "
                f"training examples ({config.support_ratio:g} x the target's), but only {capped} "
                f"are available. Choose a smaller ratio or a smaller --target-fraction."
            )
        return size
    return target_train_size(config, available, pooled=True) if task == config.target else capped


def target_train_size(config: TrainConfig, available: int, pooled: bool = False) -> int:
    """The target's training examples (``available``: its file's rows, or, ``pooled``, its
    training pool's)."""
    if not pooled:
        available = training_pool(config, config.target, available)
    size = min(available, config.max_train_examples or available)
    if config.target_fraction is not None:
        size = max(1, round(config.target_fraction * size))
    return size

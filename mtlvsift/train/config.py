"""One run's resolved configuration, and how each method (single, STILTs, MTL, MTL_All) fills it.

The scripts parse options and call ``stilts_config`` / ``mtl_config`` / ``mtl_all_config``; the
result says what the run computes and where its folder is. What a run needs from other runs (the
STILTs start model, the single-task scores of dynamic sampling) is resolved from the config by
``mtlvsift.train.prerequisites`` before training starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.commands import DEFAULT_MODEL, DEFAULT_PROTOCOL, DEFAULT_SEEDS
from mtlvsift.run_folder import run_folder, run_name, variant_suffix
from mtlvsift.tasks import GLUE_TASK_NAMES, get_task, get_tasks

# Options that change where files go or how fast a run is, not what it computes (packing, like
# --compile and --grad-accum, changes results by float rounding only; see DESIGN.md).
NOT_IDENTITY = {"data_dir", "output_dir", "overwrite", "compile_model", "num_workers", "log_every",
                "eval_batch_size", "grad_accum", "single_scores_file", "init_model", "keep_state",
                "task_files", "report_to", "start_model", "single_scores_from", "packing"}


@dataclass
class TrainConfig:
    method: str  # single | stilts | mtl | mtl_all
    tasks: list[str]  # canonical names; the target first (mtl_all: all its tasks)
    target: str | None
    support: list[str]
    name: str  # run folder name: target, target--support, all; with the protocol and variant suffix
    variant: str  # the variant within its protocol (what compare.py groups by)
    protocol: str = DEFAULT_PROTOCOL
    model: str = DEFAULT_MODEL
    seed: int = 0
    epochs: int = 10
    lr: float = 2e-5
    batch_size: int = 128
    grad_accum: int = 1
    max_seq_length: int = 128
    eval_every: float = 0.5
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_batch_size: int = 256
    max_train_examples: int | None = None
    data_seed: int = 0
    target_fraction: float | None = None
    support_ratio: float | None = None
    sampling: str | None = None
    batching: str | None = None
    dynamic_rule: str | None = None
    single_scores: dict[str, float] | None = None
    single_scores_file: str | None = None
    data_fingerprints: dict[str, dict[str, str]] | None = None  # task -> split -> file sha256
    single_scores_from: dict[str, Any] | None = None  # the single runs (or file) they came from
    support_seeds: list[int] | None = None  # seeds of the single runs STILTs / dynamic read
    start_model: dict[str, Any] | None = None  # STILTs: the supporting run started from
    init_from: str | None = None  # --init-from as given
    init_model: str | None = None  # the encoder actually loaded first (STILTs: the supporting run's)
    data_dir: str | None = None
    output_dir: str = "outputs"
    log_every: int = 10
    num_workers: int = 0
    overwrite: bool = False
    keep_state: bool = False
    compile_model: bool = False
    packing: bool = True  # packed batches for BERT/RoBERTa-family encoders (mtlvsift.train.packing)
    varlen_attention: bool = False  # packed attention by torch's varlen kernel: no attention dropout
    task_files: list[str] = field(default_factory=list)  # --task-file, absolute paths
    # Each task-file task of the run (target, support) -> its task file's sha256.
    task_definitions: dict[str, str] | None = None
    report_to: list[str] = field(default_factory=list)  # --report-to trackers

    @property
    def run_dir(self) -> Path:
        return run_folder(self.output_dir, self.method, self.name, self.seed)

    def identity(self) -> dict[str, Any]:
        """What the run computes: a rerun with a different identity must not reuse its folder."""
        identity = {k: v for k, v in asdict(self).items() if k not in NOT_IDENTITY}
        if not identity["task_definitions"]:  # GLUE runs keep the identity they had before
            del identity["task_definitions"]
        return identity

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _common(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items()
            if k in TrainConfig.__dataclass_fields__ and k != "support_seeds"}


def folder_name(base: str, variant: str, protocol: str = DEFAULT_PROTOCOL) -> str:
    """``rte--mnli__protocol-original_sampling-size``: a non-default protocol leads the suffix."""
    lead = variant_suffix({"protocol": protocol if protocol != DEFAULT_PROTOCOL else None})
    return run_name(base, "_".join(part for part in (lead, variant) if part))


def _support_seeds(options: dict[str, Any], needed: bool) -> list[int] | None:
    """--support-seeds where the run reads single runs (STILTs, dynamic sampling), else None
    (so that the option leaves the identity of other runs alone)."""
    return list(options.get("support_seeds") or DEFAULT_SEEDS) if needed else None


def task_definitions(names: list[str]) -> dict[str, str] | None:
    """The sha256 of the task file behind each task-file task among ``names`` (None: all GLUE)."""
    sources = {name: get_task(name).source for name in names}
    return {name: s.task_file_sha256 for name, s in sources.items() if s is not None} or None


def _cap_variant(options: dict[str, Any]) -> dict[str, Any]:
    return {"n": options.get("max_train_examples"),
            "ds": options.get("data_seed") or None}


def _check_size_options(support_ratio: float | None, has_support: bool) -> None:
    if support_ratio is not None and not has_support:
        raise MtlvsiftError("--support-ratio needs a supporting task (--support).")


def stilts_config(target: str, support: str | None, init_from: str | None,
                  target_fraction: float | None, support_ratio: float | None,
                  **options: Any) -> TrainConfig:
    """``--target T`` alone: plain fine-tuning (single); with ``--support S``: STILTs."""
    target_task = get_task(target)
    support_task = get_task(support) if support else None
    if support_task and support_task.name == target_task.name:
        raise MtlvsiftError(f"--support must differ from --target (both are {target_task.display}).")
    _check_size_options(support_ratio, support_task is not None)
    if support_task is None and init_from is None and target_fraction is not None:
        raise MtlvsiftError("--target-fraction is for size experiments with --support.")
    method = "stilts" if (support_task or init_from) else "single"
    variant = variant_suffix({**_cap_variant(options), "tf": target_fraction, "sr": support_ratio})
    base = f"{target_task.name}--{support_task.name}" if support_task else target_task.name
    if init_from and not support_task:
        base = f"{target_task.name}--init"
    support_names = [support_task.name] if support_task else []
    config = TrainConfig(
        method=method, tasks=[target_task.name], target=target_task.name,
        support=support_names,
        name=folder_name(base, variant, options.get("protocol") or DEFAULT_PROTOCOL),
        variant=variant, target_fraction=target_fraction, support_ratio=support_ratio,
        support_seeds=_support_seeds(options, support_task is not None and init_from is None),
        task_definitions=task_definitions([target_task.name, *support_names]),
        **_common(options),
    )
    config.init_from = init_from
    return config


def support_examples_needed(config: TrainConfig, target_available: int) -> int:
    """Size experiments: K x the target's used training size."""
    return max(1, round(config.support_ratio * target_train_size(config, target_available)))


def used_train_size(config: TrainConfig, task: str, available: int, target_available: int) -> int:
    """Training examples a task uses: capped, a fraction of the target, or K x the target's."""
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
    return target_train_size(config, available) if task == config.target else capped


def target_train_size(config: TrainConfig, available: int) -> int:
    size = min(available, config.max_train_examples or available)
    if config.target_fraction is not None:
        size = max(1, round(config.target_fraction * size))
    return size


def mtl_config(target: str, support: tuple[str, ...], sampling: str, batching: str,
               dynamic_rule: str, single_scores: str | None, target_fraction: float | None,
               support_ratio: float | None, **options: Any) -> TrainConfig:
    """Pairwise (or one-target, several-support) MTL."""
    if not support:
        raise MtlvsiftError("train_mtl.py needs at least one --support task.")
    tasks = get_tasks([target, *support])
    _check_size_options(support_ratio, True)
    variant = variant_suffix({
        "sampling": sampling if sampling != "dynamic" else None,
        "rule": dynamic_rule if sampling == "dynamic" and dynamic_rule != "softmax" else None,
        "batching": batching if batching != "heterogeneous" else None,
        **_cap_variant(options), "tf": target_fraction, "sr": support_ratio,
    })
    base = "--".join(t.name for t in tasks)
    config = TrainConfig(
        method="mtl", tasks=[t.name for t in tasks], target=tasks[0].name,
        support=[t.name for t in tasks[1:]], variant=variant,
        name=folder_name(base, variant, options.get("protocol") or DEFAULT_PROTOCOL),
        sampling=sampling, batching=batching,
        support_seeds=_support_seeds(options, sampling == "dynamic" and not single_scores),
        dynamic_rule=dynamic_rule if sampling == "dynamic" else None,
        target_fraction=target_fraction, support_ratio=support_ratio,
        task_definitions=task_definitions([t.name for t in tasks]), **_common(options),
    )
    config.single_scores_file = single_scores
    return config


def mtl_all_config(tasks: tuple[str, ...], sampling: str, batching: str, dynamic_rule: str,
                   single_scores: str | None, **options: Any) -> TrainConfig:
    """All tasks jointly; each task's own best dev score is recorded."""
    resolved = get_tasks(list(tasks) or list(GLUE_TASK_NAMES))
    names = [t.name for t in resolved]
    if len(names) < 2:
        raise MtlvsiftError("train_mtl_all.py needs at least two tasks.")
    custom = None if sorted(names) == sorted(GLUE_TASK_NAMES) else "+".join(names)
    variant = variant_suffix({
        "tasks": custom,
        "sampling": sampling if sampling != "size" else None,
        "rule": dynamic_rule if sampling == "dynamic" and dynamic_rule != "softmax" else None,
        "batching": batching if batching != "heterogeneous" else None,
        **_cap_variant(options),
    })
    config = TrainConfig(
        method="mtl_all", tasks=names, target=None, support=[], variant=variant,
        name=folder_name("all", variant, options.get("protocol") or DEFAULT_PROTOCOL),
        sampling=sampling, batching=batching,
        support_seeds=_support_seeds(options, sampling == "dynamic" and not single_scores),
        dynamic_rule=dynamic_rule if sampling == "dynamic" else None,
        task_definitions=task_definitions(names), **_common(options),
    )
    config.single_scores_file = single_scores
    return config

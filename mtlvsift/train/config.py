"""One run's resolved configuration, and how each method (single, STILTs, MTL, MTL_All) fills it.

The scripts parse options and call ``stilts_config`` / ``mtl_config`` / ``mtl_all_config``; the
result says everything the training loop needs, including the run folder and, for STILTs, the
supporting model to start from.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_folder import best_single_run, mean_single_scores, run_folder, run_name, variant_suffix
from mtlvsift.tasks import GLUE_TASK_NAMES, get_task, get_tasks

# Options that change where files go or how fast a run is, not what it computes.
NOT_IDENTITY = {"data_dir", "output_dir", "overwrite", "compile_model", "num_workers", "log_every",
                "eval_batch_size", "grad_accum", "single_scores_file", "init_model", "keep_state"}


@dataclass
class TrainConfig:
    method: str  # single | stilts | mtl | mtl_all
    tasks: list[str]  # canonical names; the target first (mtl_all: all its tasks)
    target: str | None
    support: list[str]
    name: str  # run folder name: target, target--support, all; with a variant suffix
    variant: str
    model: str = "distilroberta-base"
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
    init_from: str | None = None  # --init-from as given
    init_model: str | None = None  # the encoder actually loaded first (STILTs: the supporting run's)
    data_dir: str | None = None
    output_dir: str = "outputs"
    log_every: int = 10
    num_workers: int = 0
    overwrite: bool = False
    keep_state: bool = False
    compile_model: bool = False

    @property
    def run_dir(self) -> Path:
        return run_folder(self.output_dir, self.method, self.name, self.seed)

    def identity(self) -> dict[str, Any]:
        """What the run computes: a rerun with a different identity must not reuse its folder."""
        return {k: v for k, v in asdict(self).items() if k not in NOT_IDENTITY}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _common(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in TrainConfig.__dataclass_fields__}


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
    config = TrainConfig(
        method=method, tasks=[target_task.name], target=target_task.name,
        support=[support_task.name] if support_task else [], name=run_name(base, variant),
        variant=variant, target_fraction=target_fraction, support_ratio=support_ratio,
        **_common(options),
    )
    config.init_from = init_from
    return config


def supporting_model(config: TrainConfig, target_available: int) -> Path:
    """STILTs: the best seed's ``best/`` of the supporting task's single runs (size experiments:
    the runs on the same subsample of the supporting task that MTL draws)."""
    support = config.support[0]
    cap = config.max_train_examples
    if config.support_ratio is not None:
        cap = support_examples_needed(config, target_available)
    variant = variant_suffix({"n": cap, "ds": config.data_seed or None})
    name = run_name(support, variant)
    hint = (f"accelerate launch scripts/train_stilts.py --target {support} --model {config.model}"
            + (f" --max-train-examples {cap}" if cap else "")
            + (f" --data-seed {config.data_seed}" if config.data_seed else ""))
    return best_single_run(config.output_dir, support, name, config.model,
                           f"for seed in 0 1 2 3 4; do {hint} --seed $seed; done")


def support_examples_needed(config: TrainConfig, target_available: int) -> int:
    """Size experiments: K x the target's used training size."""
    return max(1, round(config.support_ratio * target_train_size(config, target_available)))


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
        support=[t.name for t in tasks[1:]], name=run_name(base, variant), variant=variant,
        sampling=sampling, batching=batching,
        dynamic_rule=dynamic_rule if sampling == "dynamic" else None,
        target_fraction=target_fraction, support_ratio=support_ratio, **_common(options),
    )
    _resolve_single_scores(config, single_scores)
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
        method="mtl_all", tasks=names, target=None, support=[], name=run_name("all", variant),
        variant=variant, sampling=sampling, batching=batching,
        dynamic_rule=dynamic_rule if sampling == "dynamic" else None, **_common(options),
    )
    _resolve_single_scores(config, single_scores)
    return config


def _resolve_single_scores(config: TrainConfig, path: str | None) -> None:
    """Dynamic sampling needs each task's single-task dev score: from a file, or the single runs."""
    if config.sampling != "dynamic":
        return
    if path:
        config.single_scores_file = path
        try:
            scores = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MtlvsiftError(f"--single-scores {path}: cannot read it as JSON ({exc}).") from exc
        scores = {get_task(k).name: float(v) for k, v in scores.items()}
        missing = [t for t in config.tasks if t not in scores]
        if missing:
            raise MtlvsiftError(f"--single-scores {path} has no score for: {', '.join(missing)}.")
        config.single_scores = {t: scores[t] for t in config.tasks}
        return
    variant = variant_suffix(_cap_variant(config.as_dict()))
    names = {t: run_name(t, variant) for t in config.tasks}
    scores, missing = mean_single_scores(config.output_dir, names, config.model)
    if missing:
        extra = (f" --max-train-examples {config.max_train_examples}" if config.max_train_examples else "")
        extra += f" --data-seed {config.data_seed}" if config.data_seed else ""
        commands = "\n".join(
            f"  for seed in 0 1 2 3 4; do accelerate launch scripts/train_stilts.py --target {t} "
            f"--model {config.model}{extra} --seed $seed; done" for t in missing)
        raise MtlvsiftError(
            f"Dynamic sampling needs single-task dev scores, and {config.output_dir}/single has no "
            f"finished run of {', '.join(missing)} with model {config.model}. Make them with:\n"
            f"{commands}\nor pass --single-scores FILE (JSON {{task: score}}), or use --sampling size."
        )
    config.single_scores = {t: scores[t] for t in config.tasks}

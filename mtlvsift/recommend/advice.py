"""For one target, each candidate supporting task: the size rule's method (with how often it held
on the user's finished grid) and LogME's transferability gain, ranked (scripts/recommend.py).

The gain is LogME of the target's training examples embedded by the candidate's best single run
(the model STILTs would start from) minus LogME under the pre-trained encoder itself.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from rich.console import Console

from mtlvsift.display import safe_markup
from mtlvsift.errors import MtlvsiftError
from mtlvsift.recommend.logme import logme
from mtlvsift.names import DEFAULT_PROTOCOL
from mtlvsift.report.variants import split_variant
from mtlvsift.run_folder import report_slug
from mtlvsift.tasks import GLUE_TASKS, Task, get_task, user_task_names
from mtlvsift.train.config import stilts_config
from mtlvsift.train.data.glue import resolve_data_dir, train_rows
from mtlvsift.train.prerequisites import start_model_command, with_start_model


@dataclass
class Candidate:
    support: str
    size_rule: dict[str, Any]  # method, target_size, support_size, held, judged
    logme: float | None = None
    logme_base: float | None = None
    logme_gain: float | None = None
    rank: int | None = None
    examples: int | None = None
    seconds: float | None = None
    features_cached: bool | None = None  # its embedding read from the feature cache
    start_model: str | None = None  # the best single run's best/ folder
    command: str | None = None  # the loop that makes the single runs, when they are missing


def candidate_names(target: Task, given: list[str] | None) -> list[str]:
    """The named candidates (checked), or every GLUE and task-file task but the target."""
    names = given or [*GLUE_TASKS, *user_task_names()]
    tasks = [get_task(n) for n in names]
    if given and any(t.name == target.name for t in tasks):
        raise MtlvsiftError(f"--candidates names the target {target.display}; a supporting task "
                            f"must differ from it.")
    return list(dict.fromkeys(t.name for t in tasks if t.name != target.name))


def rule_of(outputs: Path, target: str, support: str, sizes: tuple[int, int],
            model: str) -> dict[str, Any]:
    """The size rule's pick for the pair and how often that pick held in the finished grid."""
    from mtlvsift.report.compare import recommend as size_rule_advice  # scipy, statsmodels

    advice = size_rule_advice(outputs, target, support, *sizes, model=model,
                              console=Console(file=io.StringIO()))
    evidence = [e for e in advice["evidence"] if "same_pick_total" in e]
    return {"method": advice["pick"], "target_size": sizes[0], "support_size": sizes[1],
            "held": sum(e["same_pick_correct"] for e in evidence),
            "judged": sum(e["same_pick_total"] for e in evidence)}


def scored(model: str, option: str, task: Task, settings: Mapping[str, Any],
           mixed_precision: str, console: Console) -> tuple[float, int, float, bool]:
    """(LogME, examples, seconds, from the feature cache) of the target's training examples
    under ``model``."""
    # torch, transformers, accelerate: only once the target and candidates are checked
    from mtlvsift.recommend.features import target_features
    from mtlvsift.train.run_messages import quiet_transformers

    start = time.perf_counter()
    what = "the pre-trained encoder" if option == "--model" else model
    with quiet_transformers(), console.status(  # no "Loading weights" bar per candidate
            f"Embedding {task.display} training examples with {safe_markup(what)}"):
        features, labels, cached = target_features(
            model, task, settings.get("data_dir"), settings["max_examples"],
            settings["max_seq_length"], mixed_precision, option)
    if not task.is_regression and len(np.unique(labels)) < 2:
        raise MtlvsiftError(f"The {task.display} training examples have one class only; LogME "
                            f"(and a classifier) needs at least two.")
    value = logme(features, labels.astype(np.int64) if not task.is_regression else labels,
                  regression=task.is_regression)
    return value, len(labels), time.perf_counter() - start, cached


def advise(target: str, candidates: list[str] | None, options: Mapping[str, Any],
           max_examples: int, mixed_precision: str = "no",
           console: Console | None = None) -> tuple[list[Candidate], str]:
    """Every candidate for ``target``, ranked by LogME gain (unscored ones last, unranked), and
    the precision they were embedded in (``auto`` resolved); ``console`` shows which model is
    embedding (a status line, gone when done)."""
    console = console or Console(file=io.StringIO())
    task = get_task(target)
    names = candidate_names(task, candidates)
    from mtlvsift.recommend.features import embedding_precision  # torch: after the names' checks

    mixed_precision = embedding_precision(mixed_precision)
    data_dir = resolve_data_dir(options.get("data_dir"))
    target_size = train_rows(task, data_dir)
    settings = {"data_dir": options.get("data_dir"), "max_examples": max_examples,
                "max_seq_length": options["max_seq_length"]}
    base, _, _, _ = scored(options["model"], "--model", task, settings, mixed_precision, console)
    result = []
    for name in names:
        config = stilts_config(task.name, name, options)
        sizes = (target_size, train_rows(get_task(name), data_dir))
        entry = Candidate(name, rule_of(Path(config.output_dir), task.name, name, sizes, config.model))
        entry.command = start_model_command(config, target_size)
        if entry.command is None:
            entry.start_model = with_start_model(config, target_size).init_model
            entry.logme, entry.examples, entry.seconds, entry.features_cached = scored(
                entry.start_model, "the single run", task, settings, mixed_precision, console)
            entry.logme_base, entry.logme_gain = base, entry.logme - base
        result.append(entry)
    return _ranked(result), mixed_precision


def _ranked(entries: list[Candidate]) -> list[Candidate]:
    order = sorted((e for e in entries if e.logme_gain is not None), key=lambda e: -e.logme_gain)
    for rank, entry in enumerate(order, 1):
        entry.rank = rank
    return order + [e for e in entries if e.logme_gain is None]


def ranking_slug(target: str, options: Mapping[str, Any]) -> str:
    """The report whose STILTs gains this ranking predicts: the model, protocol and data variant
    (``--max-train-examples``, ``--data-seed``) of the single runs it read, named as compare.py
    names that report's folder."""
    single = stilts_config(target, None, options)
    return report_slug(single.model, single.protocol or DEFAULT_PROTOCOL,
                       split_variant(single.variant)[0])


def as_json(target: str, model: str, entries: list[Candidate],
            mixed_precision: str = "no") -> dict[str, Any]:
    return {"target": target, "model": model, "mixed_precision": mixed_precision,
            "candidates": [asdict(e) for e in entries]}

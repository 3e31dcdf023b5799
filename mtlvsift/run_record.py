"""The run record (``result.json``): the one contract between the trainer and the report.

Written once, atomically, when a run completes (``build_record`` + ``write_record``); read and
validated by ``read_record``, the only reader: the report (``run_index.discover``), STILTs (the best
supporting seed) and dynamic sampling (mean single-task scores) all go through it. Bump
``SCHEMA`` on any change a reader must know about. Imports neither torch nor transformers.

``compare.py`` reads nothing else, so it works on results copied from a cluster. Folder names are
never parsed: every fact comes from the record's fields. A folder holding ``config.json`` but no
``result.json`` is a run that started and has not finished (in progress, or interrupted).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import platform
import statistics
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

from mtlvsift import record_checks as check
from mtlvsift import run_options
from mtlvsift.commands import command_options
from mtlvsift.record_checks import InvalidRecord
from mtlvsift.names import BATCHINGS, DEFAULT_PROTOCOL, PROTOCOLS, SAMPLINGS
from mtlvsift.run_folder import atomic_write_json
from mtlvsift.scores import is_number
from mtlvsift.tasks import get_task

SCHEMA = 1
MEAN_MAIN = "mean_main"  # MTL_All selects its single best model by the mean main score


def dev_selection() -> dict[str, Any]:
    """The ``selection`` of a record that selected on dev (the paper's; every record before the field)."""
    return {"split": "dev", "fraction": None, "rows": {}}


# --------------------------------------------------------------------------- writing


def selection_entry(entry: dict[str, Any], task: str | None) -> dict[str, Any]:
    """One evaluation seen as a candidate best: by ``task``'s main metric, or by the mean over
    every task's main metric when ``task`` is None (MTL_All). ``score`` is the dev score (what is
    reported); an evaluation that also scored the held-out part (``selection_metrics``, under
    --select-on holdout) adds ``selection_score``, the score it is selected by."""
    candidate = {"step": entry["step"], "epoch": entry["epoch"], "task": task,
                 "metric": MEAN_MAIN if task is None else get_task(task).main_metric,
                 "score": _main_score(entry["metrics"], task), "metrics": entry["metrics"]}
    if entry.get("selection_metrics") is not None:
        candidate["selection_score"] = _main_score(entry["selection_metrics"], task)
    return candidate


def _main_score(metrics: dict[str, dict[str, float]], task: str | None) -> float:
    if task is None:
        return statistics.fmean(get_task(t).main_score(metrics[t]) for t in metrics)
    return get_task(task).main_score(metrics[task])


def selection_score(candidate: dict[str, Any]) -> float:
    """What a candidate best is selected by: its held-out score where the run selects on the
    held-out part, else its dev score (the paper's: the reported score is the selected one)."""
    return candidate.get("selection_score", candidate["score"])


def keep_if_best(progress: Any, entry: dict[str, Any], names: list[str],
                 target: str | None) -> tuple[bool, set[str]]:
    """Keep one evaluation (``entry``) where it is a new best by its selection score (a tie keeps
    the earlier): ``progress.best`` by the target's (MTL_All: the tasks' mean), and
    ``progress.best_by_task`` by each task's own. Returns whether it is the new ``best`` and the
    tasks whose own best it is."""
    improved = set()
    for name in names:
        candidate, current = selection_entry(entry, name), progress.best_by_task.get(name)
        if current is None or selection_score(candidate) > selection_score(current):
            progress.best_by_task[name] = candidate
            improved.add(name)
    candidate = selection_entry(entry, target)
    is_best = progress.best is None or selection_score(candidate) > selection_score(progress.best)
    if is_best:
        progress.best = candidate
    return is_best, improved


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("mtlvsift", "torch", "transformers", "accelerate", "datasets", "evaluate"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def build_record(config: dict[str, Any], progress: Any, train_sizes: dict[str, int],
                 available: dict[str, int], device: dict[str, Any],
                 baselines: dict[str, dict] | None = None,
                 selection: dict[str, Any] | None = None) -> RunRecord:
    """The record of a completed run: ``config`` its resolved config (``TrainConfig.as_dict()``),
    ``progress`` its final Progress (best, best_by_task, history, probabilities, epoch_batches,
    timings), ``device`` the accelerator's facts (device, num_processes, mixed_precision),
    ``baselines`` each task's constant-prediction dev result (``{"prediction": ..., "metrics":
    {...}, "score": main score}``: the majority class, or the mean training label of a regression),
    ``selection`` the split checkpoints were selected on (``split``, ``fraction``, ``rows`` per task)."""
    seconds = progress.train_seconds
    return RunRecord(
        path=None, method=config["method"], name=config["name"], variant=config["variant"],
        target=config["target"], support=tuple(config["support"]), tasks=tuple(config["tasks"]),
        seed=config["seed"], model=config["model"], protocol=config["protocol"],
        sampling=config["sampling"], batching=config["batching"], train_sizes=train_sizes,
        available_train_sizes=available,
        size_experiment={"target_fraction": config["target_fraction"],
                         "support_ratio": config["support_ratio"], "data_seed": config["data_seed"]},
        init_model=config["init_model"], start_model=config["start_model"],
        single_scores=config["single_scores"], data_fingerprints=config["data_fingerprints"],
        single_scores_from=config["single_scores_from"], config=config, baselines=baselines,
        selection=selection or dev_selection(),
        best=progress.best, best_by_task=progress.best_by_task, history=progress.history,
        probabilities=progress.probabilities,
        batches_per_epoch=[progress.epoch_batches[e] for e in sorted(progress.epoch_batches, key=int)],
        **_exposure(progress.epoch_rows, len(progress.epoch_batches), [train_sizes.get(t) for t in config["tasks"]]),
        timing={
            "train_seconds": seconds,
            "eval_seconds": progress.eval_seconds,
            "save_seconds": progress.save_seconds,
            "checkpoint_blocked_seconds": progress.checkpoint_blocked_seconds,
            "examples": progress.examples,
            "examples_per_second": progress.examples / seconds if seconds > 0 else None,
            "steps": progress.step,
            "host": platform.node(),  # the grid's ETA reads rates measured on the same machine
            **device,
        },
        versions=_versions(),
    )


def _exposure(epoch_rows: dict[str, list[int]], epochs: int, sizes: list[int | None]) -> dict[str, Any]:
    """rows_per_epoch and passes_per_epoch (rows / the task's training size); None when a run
    resumed from a state written before they were kept lacks some epoch's."""
    if set(epoch_rows) != {str(e) for e in range(epochs)} or not all(sizes):
        return {"rows_per_epoch": None, "passes_per_epoch": None}
    rows = [epoch_rows[str(e)] for e in range(epochs)]
    return {"rows_per_epoch": rows,
            "passes_per_epoch": [[r / n for r, n in zip(epoch, sizes)] for epoch in rows]}


def write_record(path: Path, record: RunRecord) -> None:
    atomic_write_json(path, record.to_json())


# --------------------------------------------------------------------------- the record


def _field(check: Callable[[Any, dict], Any]) -> Any:
    """A record field and the check its value passes when read (``check(value, raw)`` returns
    the value as the reader keeps it, or raises ``InvalidRecord``)."""
    return field(metadata={"check": check})


@dataclass(frozen=True)
class RunRecord:
    """One ``result.json``: every field as it is written, each with the check a reader applies
    (the one list of the record's fields); what the report derives from them are properties.
    Scores are in [0, 1] ([-1, 1] for MCC and the correlations), as written."""

    path: Path | None  # where it was read from (not written)
    method: str = _field(lambda v, raw: check.method(v))
    name: str = _field(lambda v, raw: v if isinstance(v, str) else "")
    variant: str = _field(lambda v, raw: check.variant(v))
    target: str | None = _field(lambda v, raw: check.target(v, raw))  # None for mtl_all
    support: tuple[str, ...] = _field(lambda v, raw: check.support(v, raw))
    tasks: tuple[str, ...] = _field(lambda v, raw: check.tasks(v, raw))
    seed: int = _field(lambda v, raw: check.seed(v))
    model: str = _field(lambda v, raw: check.model(v))
    protocol: str = _field(lambda v, raw: check.choice(v, "protocol", PROTOCOLS) or DEFAULT_PROTOCOL)
    sampling: str | None = _field(lambda v, raw: check.choice(v, "sampling", SAMPLINGS))
    batching: str | None = _field(lambda v, raw: check.choice(v, "batching", BATCHINGS))
    train_sizes: dict[str, int] = _field(lambda v, raw: check.sizes(v, "train_sizes"))  # what was used
    available_train_sizes: dict[str, int] = _field(lambda v, raw: check.sizes(v, "available_train_sizes"))
    # target_fraction, support_ratio, data_seed of a size experiment (numbers or None)
    size_experiment: dict[str, Any] = _field(lambda v, raw: check.size_experiment(v))
    init_model: str | None = _field(lambda v, raw: v if isinstance(v, str) else None)
    # STILTs: the supporting run started from (run folder, seed, score, the seeds chosen from)
    start_model: dict[str, Any] | None = _field(lambda v, raw: check.start_model(v, raw))
    single_scores: dict[str, float] | None = _field(lambda v, raw: check.single_scores(v, raw))
    data_fingerprints: dict | None = _field(lambda v, raw: check.object_or_none(v, "data_fingerprints"))
    single_scores_from: dict | None = _field(lambda v, raw: check.object_or_none(v, "single_scores_from"))
    config: dict[str, Any] = _field(lambda v, raw: check.config(v, raw))  # the full resolved config
    baselines: dict[str, dict] | None = _field(lambda v, raw: check.baselines(v, raw))
    best: dict[str, Any] | None = _field(lambda v, raw: check.best(v, raw))  # the selected evaluation
    best_by_task: dict[str, dict] = _field(lambda v, raw: check.best_by_task(v, raw))
    history: list[dict] = _field(lambda v, raw: check.a_list(v, "history"))  # every evaluation
    probabilities: dict | list | None = _field(lambda v, raw: v)
    batches_per_epoch: list[int] = _field(lambda v, raw: check.a_list(v, "batches_per_epoch"))
    timing: dict[str, Any] = _field(lambda v, raw: check.object_or_none(v, "timing") or {})
    versions: dict[str, str] = _field(lambda v, raw: check.object_or_none(v, "versions") or {})
    # The split checkpoints were selected on: dev (a record without the field), or the held-out
    # part of training (best and best_by_task then hold its selection_score beside the dev score).
    selection: dict[str, Any] = field(default_factory=dev_selection,
                                      metadata={"check": lambda v, raw: check.selection(v, raw)})
    # Each epoch's rows of each task (in ``tasks``' order), and its passes over the task's data
    # (None: a record written before they were kept, or one built in code without them)
    rows_per_epoch: list[list[int]] | None = field(default=None, metadata={
        "check": lambda v, raw: check.per_epoch(v, raw, "rows_per_epoch", True)})
    passes_per_epoch: list[list[float]] | None = field(default=None, metadata={
        "check": lambda v, raw: check.per_epoch(v, raw, "passes_per_epoch", False)})

    def to_json(self) -> dict[str, Any]:
        """What result.json holds: the schema, then every field but ``path``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        return {"schema": SCHEMA, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}

    # --- what the report reads
    @property
    def folder(self) -> Path:
        """The run folder (``best/`` of the run lies there)."""
        return self.path.parent

    @property
    def score(self) -> float | None:
        """best.score: the target's main metric at the selected step (None for mtl_all)."""
        return None if self.method == "mtl_all" else float(self.best["score"])

    @property
    def selected_on(self) -> str:
        """Where its checkpoints were selected: 'dev' (the paper's) or 'holdout'."""
        return self.selection["split"]

    @property
    def selection_score(self) -> float | None:
        """The target's score on the selection split at the selected step (its dev score where it
        selected on dev): what a STILTs start model and dynamic sampling's scores are chosen by."""
        return None if self.method == "mtl_all" else float(selection_score(self.best))

    @property
    def added_until_decided(self) -> bool:
        """Whether run_grid.py --until-decided added this seed after looking at its cell's verdict."""
        return self.config.get(run_options.ADDED_UNTIL_DECIDED) is True

    @property
    def mean_passes(self) -> dict[str, float] | None:
        """Each task's passes over its data per epoch, the mean over the epochs (None: a record
        written before they were kept)."""
        if not self.passes_per_epoch:
            return None
        return {task: statistics.fmean(epoch[i] for epoch in self.passes_per_epoch)
                for i, task in enumerate(self.tasks)}

    @property
    def task_scores(self) -> dict[str, float]:
        """Each task's best_by_task score, each at its own best step."""
        return {task: float(best["score"]) for task, best in self.best_by_task.items()}

    @property
    def main_metrics(self) -> dict[str, str]:
        return check.main_metrics(self.best_by_task)

    @property
    def target_fraction(self) -> float | None:
        return self.size_experiment.get("target_fraction")

    @property
    def support_ratio(self) -> float | None:
        return self.size_experiment.get("support_ratio")

    @property
    def is_size_experiment(self) -> bool:
        return self.target_fraction is not None or self.support_ratio is not None

    @property
    def task_files(self) -> tuple[str, ...]:
        """config.task_files: where its task-file tasks were defined."""
        return tuple(f for f in self.config.get("task_files") or [] if isinstance(f, str))

    @functools.cached_property
    def options(self) -> dict[str, Any]:
        """The options that make this run again (``commands.command_options`` of its config,
        checked when read); the report's commands for missing runs start from them."""
        return command_options(self.method, self.config)

    @property
    def baseline_scores(self) -> dict[str, float]:
        """Each task's main dev score of a constant prediction (records before the field: none)."""
        return {task: float(entry["score"]) for task, entry in (self.baselines or {}).items()
                if is_number(entry.get("score"))}

    @property
    def start_model_key(self) -> tuple | None:
        """What identifies a start model across seeds: its run folder, seed and dev score."""
        sm = self.start_model
        return None if sm is None else (sm["run"], sm["seed"], sm.get("score"))

    @property
    def single_scores_key(self) -> tuple | None:
        """Dynamic sampling's single-task scores as ((task, score), ...), to compare across seeds."""
        return tuple(sorted(self.single_scores.items())) if self.single_scores else None


def load(path: str | Path) -> dict[str, Any]:
    """The raw fields of one result.json of this schema; anything else raises ``InvalidRecord``."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidRecord(f"cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidRecord(f"not valid JSON, corrupt or half-written ({err})") from None
    except (ValueError, RecursionError) as err:  # nested too deep, a number too long
        raise InvalidRecord(f"not a run record ({type(err).__name__}: {str(err)[:100]})") from None
    if not isinstance(raw, dict) or "schema" not in raw or "method" not in raw:
        raise InvalidRecord("not a mtlvsift run record (no 'schema' and 'method' fields)")
    if raw["schema"] != SCHEMA:
        raise InvalidRecord(f"schema {check.shown(raw['schema'])} is not supported (this version "
                            f"reads {SCHEMA})")
    return raw


def read_record(path: Path) -> RunRecord:
    """Parse and check one result.json (every field by its own check, in the order the record
    lists them); a file that is not a valid record raises ``InvalidRecord``. Every field that
    reaches the report, the terminal or missing.sh is checked against what a trainer writes."""
    raw = load(path)
    values = {f.name: f.metadata["check"](raw.get(f.name), raw)
              for f in dataclasses.fields(RunRecord) if f.name != "path"}
    return RunRecord(path=path, **values)


# --------------------------------------------------------------------------- the checks



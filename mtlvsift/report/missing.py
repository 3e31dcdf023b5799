"""Runs the report still lacks, and the shell commands (a loop over seeds) that would make them.

A matrix cell needs a STILTs group and an MTL group with every expected seed (the seeds in use in
the report; the paper's five when only one seed is seen, since a t-test needs two); STILTs needs
the single-task run of its supporting task.
One pairwise MTL run fills two cells (the supporting task's score is recorded too), so a missing
pair is proposed once.

Every command comes from ``commands.train_command`` (the one builder) with the options recorded
by the report's own runs (``RunRecord.options``): a run that lacks some seeds repeats the options
of its seeds that exist; a configuration with none takes the options every run of the report
shares (model, data, epochs, batch size, learning rate, ...) from a run of the same method, else
from any run of the report. So a command made for a mini experiment trains the mini experiment.
A report whose pairwise runs are all a size experiment's asks for that experiment's seeds, not
for a matrix or MTL_All.

A cell whose seeds are not pooled (``pooling.py``) is fixed by retraining its refused groups'
seeds with ``--overwrite`` (``retrain_runs``), once the runs they read are final: each then reads
the same start model and scores.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlvsift.commands import TASKS, train_command
from mtlvsift.names import DEFAULT_OUTPUTS, DEFAULT_SEEDS, METHODS
from mtlvsift.run_options import ADDED_UNTIL_DECIDED, OPTIONS
from mtlvsift.report.pooling import pooling_problems
from mtlvsift.report.stats import Analysis, Group
from mtlvsift.report.variants import MTL_KEYS
from mtlvsift.run_record import RunRecord
from mtlvsift.tasks import GLUE_TASK_NAMES, GLUE_TASKS, display_name

ORDER = ("single", "stilts", "mtl", "mtl_all")  # STILTs and dynamic MTL read the single runs
# The options (train_command's names) that every run of an experiment shares: every method's.
SHARED_OPTIONS = tuple(o.name for o in OPTIONS if o.command and set(o.methods) == set(METHODS))
MTL_CONFIGURATION_OPTIONS = tuple(o.name for o in OPTIONS if o.suffix in MTL_KEYS)


@dataclass(frozen=True)
class MissingRun:
    method: str
    target: str | None
    support: str | None
    seeds: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # train_command's, --output-dir aside
    partial: bool = False  # some seeds of this configuration exist already
    label: str = ""  # MTL_All: its sampling and task set; a size experiment's F and K
    retrain: bool = False  # the seeds exist and are not pooled: retrained with --overwrite

    def command(self, outputs: Path = Path(DEFAULT_OUTPUTS)) -> str:
        """The shell command that trains the missing seeds, e.g. a ``for seed in ...`` loop, into
        ``outputs`` (the folder the report read; given last, before the seed)."""
        options = {k: v for k, v in self.options.items() if k != "output_dir"}
        if Path(outputs) != Path(DEFAULT_OUTPUTS):
            options["output_dir"] = str(outputs)
        return train_command(self.method, self.target, [self.support] if self.support else [],
                             options, self.seeds)

    def describe(self) -> str:
        name = {"single": "single", "stilts": "STILTs", "mtl": "MTL", "mtl_all": "MTL_All"}
        what = name[self.method]
        if self.target:
            what += f" {self.target}" + (f" <- {self.support}" if self.support else "")
        if self.label:
            what += f" ({self.label})"
        lacking = "seed" + ("s " if len(self.seeds) > 1 else " ") + ", ".join(map(str, self.seeds))
        if self.retrain:
            return f"{what}: retrain {lacking} (not pooled)"
        return f"{what}: {lacking}" + (" (others done)" if self.partial else "")


def missing_runs(analysis: Analysis) -> list[MissingRun]:
    """Every single, STILTs, MTL and MTL_All configuration the matrix and tables still lack."""
    expected = tuple(analysis.expected_seeds)
    found: dict[tuple, MissingRun] = {}

    def want(method: str, target: str | None, support: str | None, groups: list[Group],
             key: tuple = (), size: dict[str, Any] | None = None) -> None:
        have = {s for g in groups for s in g.seeds}
        lacking = tuple(s for s in expected if s not in have)
        key = (method, target, support, *key)
        if lacking and key not in found:
            records = [r for g in groups for r in g.records]
            options = _most_common(records) if records else {
                **_new_options(analysis, method, {target, support} - {None}), **(size or {})}
            label = _mtl_all_label(records, options) if method == "mtl_all" else _size_label(size)
            found[key] = MissingRun(method, target, support, lacking, options, bool(have), label)

    tasks = analysis.tasks
    for target in tasks:
        want("single", target, None, _present(analysis.singles.get(target)))
    for target, support, fraction, ratio in _size_configurations(analysis):
        size = {"target_fraction": fraction, "support_ratio": ratio}
        for method in ("stilts", "mtl"):
            config = (method, target, support, fraction, ratio)
            groups = [g for g in analysis.size_groups if config == (
                g.method, g.target, g.support[0], g.target_fraction, g.support_ratio)]
            want(method, target, support, groups, (fraction, ratio), size)
    if analysis.size_groups and not analysis.cells and not analysis.mtl_all:
        return _in_order(found)  # a size experiment: no matrix, no MTL_All
    for target in tasks:
        for support in tasks:
            if target != support:
                cell = analysis.cell(target, support)
                want("stilts", target, support, _present(cell.stilts if cell else None))
    for target in reversed(tasks):  # a missing pair is proposed with the smaller task as target
        for support in tasks:
            if target == support:
                continue
            cell = analysis.cell(target, support)
            group = cell.mtl if cell else None
            if group is None and ("mtl", support, target) in found:
                continue  # the run proposed for the symmetric cell fills this one too
            if group is not None and group.symmetric:  # seeds come from runs of (support, target)
                want("mtl", support, target, [group])
            else:
                want("mtl", target, support, _present(group))
    if len(tasks) > 1:
        if not analysis.mtl_all:  # over the report's tasks
            want("mtl_all", None, None, [])
        for config in analysis.mtl_all_samplings():
            want("mtl_all", None, None,
                 [g for g in analysis.mtl_all if (g.sampling, g.variant) == config], config)
    return _in_order(found)


def _in_order(found: dict[tuple, MissingRun]) -> list[MissingRun]:
    """Prerequisites first (the single runs), then whole configurations before partial ones."""
    return sorted(found.values(), key=lambda m: (ORDER.index(m.method), m.partial))


def retrain_runs(analysis: Analysis) -> list[MissingRun]:
    """The commands that fix the cells whose seeds are not pooled: every seed of each refused
    group again, with ``--overwrite`` and the options most of its seeds were made with (seeds
    that --until-decided added keep their mark: they were still chosen after a look)."""
    found: dict[tuple, MissingRun] = {}
    for key in analysis.ordered_cells():
        for group in (analysis.cells[key].stilts, analysis.cells[key].mtl):
            if group is None or not pooling_problems(group.describe(), group.records):
                continue
            first = group.records[0]  # a symmetric MTL group: the runs of (support, target)
            support = first.support[0] if first.support else None
            for added in (False, True):
                seeds = tuple(sorted(r.seed for r in group.records
                                     if r.added_until_decided == added))
                options = {**_most_common(group.records), "overwrite": True,
                           ADDED_UNTIL_DECIDED: added}
                if seeds:
                    found.setdefault((group.method, first.target, support, added), MissingRun(
                        group.method, first.target, support, seeds, options, retrain=True))
    return _in_order(found)


def _present(group: Group | None) -> list[Group]:
    return [group] if group is not None else []


def _most_common(records: list[RunRecord]) -> dict[str, Any]:
    """The options most of ``records`` were made with (their seeds agree, unless --overwrite
    remade some with other options); a missing seed is not one --until-decided chose, so its
    mark (``added_until_decided``) is left out."""
    made = [{k: v for k, v in r.options.items() if k != ADDED_UNTIL_DECIDED} for r in records]
    counts = Counter(tuple((k, _hashable(v)) for k, v in options.items()) for options in made)
    best = counts.most_common(1)[0][0]
    return next(options for options in made
                if tuple((k, _hashable(v)) for k, v in options.items()) == best)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _new_options(analysis: Analysis, method: str, tasks: set[str]) -> dict[str, Any]:
    """The options of a configuration without any run: what the report's runs share, taken from
    runs of the same method when there are some; the seeds in use for the single runs read
    (STILTs, dynamic MTL); MTL_All over the report's tasks."""
    same = [r for r in analysis.records if r.method == method]
    template = _most_common(same or analysis.records)
    options = {k: v for k, v in template.items() if k in SHARED_OPTIONS}
    if method == "mtl" and analysis.mtl and same:  # a report of one MTL configuration: its options
        options.update({k: v for k, v in template.items() if k in MTL_CONFIGURATION_OPTIONS})
    if method == "mtl_all":
        tasks = set(analysis.tasks)
        if sorted(tasks) != sorted(GLUE_TASK_NAMES):
            options[TASKS] = ",".join(analysis.tasks)
    elif method in ("stilts", "mtl") and tuple(analysis.expected_seeds) != DEFAULT_SEEDS:
        options["support_seeds"] = list(analysis.expected_seeds)
    options.pop("task_files", None)  # where a task-file task is defined, only where one is used
    if not tasks <= set(GLUE_TASKS) and analysis.task_files:
        options["task_files"] = list(analysis.task_files)
    return options


def _mtl_all_label(records: list[RunRecord], options: dict[str, Any]) -> str:
    """'size, RTE+MRPC': MTL_All's sampling and, when it is not GLUE's nine, its task set."""
    sampling = records[0].sampling if records else options.get("sampling")
    tasks = list(records[0].tasks) if records else str(options.get("tasks", "")).split(",")
    parts = [sampling or "size"]
    if tasks != [""] and sorted(tasks) != sorted(GLUE_TASK_NAMES):
        parts.append("+".join(display_name(t) for t in tasks))
    return ", ".join(parts)


def _size_configurations(analysis: Analysis) -> list[tuple]:
    """(target, support, target fraction, support ratio) of the report's size experiment."""
    found = {(g.target, g.support[0], g.target_fraction, g.support_ratio)
             for g in analysis.size_groups if len(g.support) == 1}
    return sorted(found, key=lambda c: (c[0], c[1], c[2] or 0, c[3] or 0))


def _size_label(size: dict[str, Any] | None) -> str:
    """'F 0.5, K 2': a size experiment's target fraction and support ratio ('' otherwise)."""
    parts = [f"{name} {size[key]:g}" for name, key in (("F", "target_fraction"),
                                                        ("K", "support_ratio"))
             if size and size[key] is not None]
    return ", ".join(parts)

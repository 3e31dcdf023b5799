"""Runs the report still lacks, and the shell commands (a loop over seeds) that would make them.

A matrix cell needs a STILTs group and an MTL group with every expected seed (the seeds seen in
the tree; the paper's five when only one seed is seen, since a t-test needs two); STILTs needs
the single-task run of its supporting task.
One pairwise MTL run fills two cells (the supporting task's score is recorded too), so a missing
pair is proposed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtlvsift.commands import DEFAULT_MODEL, DEFAULT_OUTPUTS, DEFAULT_PROTOCOL, train_command
from mtlvsift.report.stats import Analysis, Group
from mtlvsift.tasks import GLUE_TASKS

ORDER = ("single", "stilts", "mtl", "mtl_all")  # STILTs starts from its support's single run


@dataclass(frozen=True)
class MissingRun:
    method: str
    target: str | None
    support: str | None
    seeds: tuple[int, ...]
    sampling: str | None = None
    partial: bool = False  # some seeds of this configuration exist already
    task_files: tuple[str, ...] = ()  # where its task-file tasks are defined (--task-file)
    protocol: str = DEFAULT_PROTOCOL

    def command(self, model: str = DEFAULT_MODEL, outputs: Path = Path(DEFAULT_OUTPUTS)) -> str:
        """The shell command that trains the missing seeds, e.g. a ``for seed in ...`` loop."""
        options = {"sampling": self.sampling if self.sampling != "size" else None,
                   "model": model if model != DEFAULT_MODEL else None,
                   "output_dir": outputs if Path(outputs) != Path(DEFAULT_OUTPUTS) else None,
                   "protocol": self.protocol if self.protocol != DEFAULT_PROTOCOL else None,
                   "task_file": list(self.task_files)}
        return train_command(self.method, self.target, [self.support] if self.support else [],
                             options, self.seeds)

    def describe(self) -> str:
        name = {"single": "single", "stilts": "STILTs", "mtl": "MTL", "mtl_all": "MTL_All"}
        what = name[self.method]
        if self.target:
            what += f" {self.target}" + (f" <- {self.support}" if self.support else "")
        if self.sampling and self.method == "mtl_all":
            what += f" ({self.sampling})"
        lacking = "seed" + ("s " if len(self.seeds) > 1 else " ") + ", ".join(map(str, self.seeds))
        return f"{what}: {lacking}" + (" (others done)" if self.partial else "")


def missing_runs(analysis: Analysis) -> list[MissingRun]:
    """Every single, STILTs, MTL and MTL_All configuration the matrix and tables still lack."""
    expected = tuple(analysis.expected_seeds)
    found: dict[tuple, MissingRun] = {}

    def want(method: str, target: str | None, support: str | None, group: Group | None,
             seeds: set[int] | None = None, sampling: str | None = None) -> None:
        have = set(group.seeds) if group is not None else (seeds or set())
        lacking = tuple(s for s in expected if s not in have)
        key = (method, target, support, sampling)
        if lacking and key not in found:
            glue_only = {target, support} - {None} <= set(GLUE_TASKS)
            found[key] = MissingRun(method, target, support, lacking, sampling, bool(have),
                                    () if glue_only else tuple(analysis.task_files),
                                    analysis.protocol)

    tasks = analysis.tasks
    for target in tasks:
        want("single", target, None, analysis.singles.get(target))
    for target in tasks:
        for support in tasks:
            if target != support:
                cell = analysis.cell(target, support)
                want("stilts", target, support, cell.stilts if cell else None)
    for target in reversed(tasks):  # a missing pair is proposed with the smaller task as target
        for support in tasks:
            if target == support:
                continue
            cell = analysis.cell(target, support)
            group = cell.mtl if cell else None
            if group is None and ("mtl", support, target, None) in found:
                continue  # the run proposed for the symmetric cell fills this one too
            if group is not None and group.symmetric:  # seeds come from runs of (support, target)
                want("mtl", support, target, group)
            else:
                want("mtl", target, support, group)
    if len(tasks) > 1:
        if not analysis.mtl_all:
            want("mtl_all", None, None, None)
        for sampling, variant in analysis.mtl_all_samplings():
            seeds = {s for g in analysis.mtl_all if (g.sampling, g.variant) == (sampling, variant)
                     for s in g.seeds}
            want("mtl_all", None, None, None, seeds=seeds, sampling=sampling)
    # Whole configurations first, then the ones that only lack some seeds.
    return sorted(found.values(), key=lambda m: (m.partial, ORDER.index(m.method)))

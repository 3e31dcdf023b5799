"""Aggregation over seeds, the per-cell t-tests and the size heuristic (Weller et al., 2022).

Scores stay in [0, 1] inside groups (the t-test runs on the raw seed scores); everything a report
shows is in points (x100). The paper's tables are built from an ``Analysis`` in ``mtlvsift.report.tables``.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mtlvsift.display import safe_text
from mtlvsift.names import DEFAULT_PROTOCOL, DEFAULT_SEEDS
from mtlvsift.report import inference
from mtlvsift.report.exposure import cell_passes
from mtlvsift.report.pooling import pooling_problems
from mtlvsift.report.variants import ReportKey, Settings, report_records
from mtlvsift.report.verdicts import DEFAULT_MARGIN, CellStats, HeuristicScore, \
    almost_stochastic_order, cell_stats, decide
from mtlvsift.run_record import RunRecord
from mtlvsift.tasks import GLUE_TASK_NAMES, GLUE_TASKS

POINTS = 100.0
PAPER_HEURISTIC = (49, 53)  # Weller et al. (2022): significant GLUE cells the heuristic got right
PAIRWISE = ("stilts", "mtl")
BASELINE_MARGIN = 0.5  # points


@dataclass
class Group:
    """The seeds of one configuration: method, target, support, model, variant (and sampling)."""

    method: str
    target: str
    support: tuple[str, ...]
    model: str
    variant: str = ""
    sampling: str | None = None
    target_fraction: float | None = None
    support_ratio: float | None = None
    symmetric: bool = False  # read from the supporting side of pairwise MTL runs (best_by_task)
    seeds: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # raw, in [0, 1]
    records: list[RunRecord] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        """Mean over seeds, in points."""
        return statistics.fmean(self.scores) * POINTS

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds, in points; None with one seed."""
        return statistics.stdev(self.scores) * POINTS if self.n > 1 else None

    def ci90(self) -> float | None:
        """Half-width of the 90% confidence interval of the mean (Student's t), in points."""
        if self.n < 2:
            return None
        from scipy import stats as scipy_stats  # not at import: run_grid's early errors

        return float(scipy_stats.t.ppf(0.95, self.n - 1)) * self.std / math.sqrt(self.n)

    def ci90_boot(self) -> tuple[float, float] | None:
        """The percentile bootstrap 90% interval of the mean, in points, as seaborn's error bars
        (the authors' Figure 2); None with one seed."""
        return inference.mean_interval([s * POINTS for s in self.scores], 0.9)

    def add(self, record: RunRecord, score: float) -> str | None:
        """Add one seed; a second run of the same seed is kept out and reported."""
        if record.seed in self.seeds:
            first = self.records[self.seeds.index(record.seed)].path
            return (f"{safe_text(record.path)}: seed {record.seed} of {self.describe()} was "
                    f"already read from {safe_text(first)}; kept the first")
        self.seeds.append(record.seed)
        self.scores.append(score)
        self.records.append(record)
        return None

    def describe(self) -> str:
        name = "--".join((self.target, *self.support))
        extra = f" [{self.variant}]" if self.variant else ""
        return f"{self.method} {name}{extra} ({self.model})"


@dataclass
class Cell:
    """One (target, support) cell of the MTL vs STILTs matrix."""

    target: str
    support: str
    mtl: Group | None
    stilts: Group | None
    target_size: int | None
    support_size: int | None
    t: float | None = None
    p: float | None = None
    significant: bool = False
    better: str | None = None  # "mtl" or "stilts" when significant
    heuristic: str | None = None  # the size heuristic's pick
    refusals: list[str] = field(default_factory=list)  # why its seeds are not pooled (pooling.py)
    # Both means within BASELINE_MARGIN of the target's constant-prediction score: nothing was
    # learned (None: no baseline recorded, or the cell is not complete).
    at_baseline: bool | None = None
    stats: CellStats | None = None  # the cell's tests (verdicts.py); None when not complete
    # Seeds of its STILTs run that run_grid.py --until-decided added after looking at its verdict:
    # its test is then sequential, not a fixed-n one (docs/compare.md).
    sequential: bool = False
    # Mean passes per epoch over each task's data: {"mtl"|"stilts": {"target"|"support": x}}
    passes: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        """'decided', 'equivalent' or 'open'; None when the cell is not complete."""
        return self.stats.verdict if self.stats else None

    @property
    def refused(self) -> str | None:
        """Every reason its seeds are not pooled, as one text; None when they are pooled."""
        return " ".join(self.refusals) or None

    @property
    def complete(self) -> bool:
        return self.mtl is not None and self.stilts is not None and self.refused is None

    @property
    def diff(self) -> float | None:
        """MTL mean minus STILTs mean, in points."""
        return self.mtl.mean - self.stilts.mean if self.complete else None

    @property
    def size_tie(self) -> bool:
        """Both training sets have the same size (every task capped alike): the rule does not
        choose, so the cell is no prediction of it."""
        return self.target_size is not None and self.target_size == self.support_size

    @property
    def heuristic_correct(self) -> bool | None:
        """Whether the heuristic named the significantly better method (None if not significant)."""
        if not self.significant or self.heuristic is None:
            return None
        return self.heuristic == self.better


@dataclass
class Analysis:
    """Everything the report shows for one model."""

    model: str
    alpha: float
    welch: bool
    tasks: list[str]  # matrix rows and columns, by descending training size
    cells: dict[tuple[str, str], Cell]
    singles: dict[str, Group]
    mtl_all: list[Group]  # one group per (sampling, variant, task)
    size_groups: list[Group]  # size experiments (Figure 2)
    others: list[Group]  # variants and multi-support runs, shown as a list
    sizes: dict[str, int | None]
    expected_seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    main_metrics: dict[str, str] = field(default_factory=dict)  # task -> its main metric's name
    task_files: list[str] = field(default_factory=list)  # the task files the runs were made with
    protocol: str = DEFAULT_PROTOCOL
    variant: str = ""  # the data variant every run of this report shares ('n-300'), see variants.py
    settings: Settings = ()  # how its runs' settings differ from the main report's (variants.py)
    mtl: str = ""  # the pairwise MTL configuration of its matrix (variants.py), '' the default
    records: list[RunRecord] = field(default_factory=list)  # the report's runs (variants within)
    baselines: dict[str, float] = field(default_factory=dict)  # task -> constant prediction, points
    correction: str = "none"  # of the p values over the report's cells: none, holm, bh
    equivalence_margin: float = DEFAULT_MARGIN  # points, the TOST's
    aso: bool = False  # almost stochastic order computed per cell (compare.py --aso, deepsig)

    @property
    def test(self) -> str:
        return "welch" if self.welch else "student"

    @property
    def key(self) -> ReportKey:
        return ReportKey(self.model, self.protocol, self.variant, self.settings, self.mtl)

    @property
    def seeds_in_use(self) -> list[int]:
        """The seeds of the matrix's, the single and the MTL_All runs."""
        groups = [*self.singles.values(), *self.mtl_all, *(
            g for c in self.cells.values() for g in (c.mtl, c.stilts) if g)]
        return sorted({s for g in groups for s in g.seeds})

    @property
    def test_name(self) -> str:
        return "Welch's t-test" if self.welch else "Student's t-test (equal variances)"

    @property
    def heuristic(self) -> HeuristicScore:
        judged = [c.heuristic_correct for c in self.cells.values()]
        judged = [j for j in judged if j is not None]
        ties = sum(c.significant and c.size_tie for c in self.cells.values())
        return HeuristicScore(sum(judged), len(judged), ties)

    @property
    def all_tasks(self) -> list[str]:
        """The matrix's tasks and MTL_All's, by descending training size (Table 1's columns)."""
        return order_tasks(set(self.tasks) | {g.target for g in self.mtl_all}, self.sizes)

    def cell(self, target: str, support: str) -> Cell | None:
        return self.cells.get((target, support))

    def ordered_cells(self) -> list[tuple[str, str]]:
        """The cells' (target, support) keys in the matrix's order of tasks."""
        rank = {t: i for i, t in enumerate(self.tasks)}
        return sorted(self.cells, key=lambda k: (rank[k[0]], rank[k[1]]))

    def mtl_all_samplings(self) -> list[tuple[str | None, str]]:
        """The (sampling, variant) configurations of MTL_All present, in a stable order."""
        configs = {(g.sampling, g.variant) for g in self.mtl_all}
        return sorted(configs, key=lambda k: (k[1], str(k[0])))


def size_heuristic(target_size: int | None, support_size: int | None) -> str | None:
    """MTL when the target's training set is smaller than the supporting one, STILTs when it is
    larger; None when a size is unknown or the two are equal (a tie: ``Cell.size_tie``)."""
    if target_size is None or support_size is None or target_size == support_size:
        return None
    return "mtl" if target_size < support_size else "stilts"


def aggregate(records: list[RunRecord]) -> tuple[list[Group], list[str]]:
    """Group the seeds of every configuration (MTL_All: one group per task)."""
    groups: dict[tuple, Group] = {}
    problems: list[str] = []
    for rec in records:
        if rec.method == "mtl_all":
            items = [(task, (), score) for task, score in rec.task_scores.items()]
        else:
            items = [(rec.target, rec.support, rec.score)]
        for target, support, score in items:
            sampling = rec.sampling if rec.method == "mtl_all" else None  # MTL_All's rows
            key = (rec.method, target, support, rec.model, rec.variant, sampling,
                   rec.target_fraction, rec.support_ratio)
            if key not in groups:
                groups[key] = Group(rec.method, target, support, rec.model, rec.variant,
                                    sampling, rec.target_fraction, rec.support_ratio)
            group = groups[key]
            problem = group.add(rec, score)
            if problem and problem not in problems:
                problems.append(problem)
    return list(groups.values()), problems


def symmetric_groups(records: list[RunRecord]) -> dict[tuple[str, str], Group]:
    """The supporting task's scores of pairwise MTL runs: cell (support, target) for free."""
    groups: dict[tuple[str, str], Group] = {}
    for rec in records:
        pairwise = rec.method == "mtl" and len(rec.support) == 1
        if (not pairwise or rec.variant or rec.is_size_experiment
                or rec.support[0] not in rec.task_scores):
            continue
        key = (rec.support[0], rec.target)
        group = groups.setdefault(key, Group("mtl", key[0], (key[1],), rec.model, symmetric=True))
        group.add(rec, rec.task_scores[key[0]])
    return groups


def analyze(records: list[RunRecord], model: str, alpha: float = 0.1,
            welch: bool = False, protocol: str = DEFAULT_PROTOCOL, variant: str = "",
            correction: str = "none", margin: float = DEFAULT_MARGIN,
            aso: bool = False, settings: Settings = (), mtl: str = "") -> Analysis:
    """Aggregate one model's runs of one protocol, data variant (``n-300``) and settings (see
    variants.py) and test every cell of the MTL vs STILTs matrix (``aso``: with deepsig's almost
    stochastic order as well, a few seconds a cell)."""
    key = ReportKey(model, protocol, variant, settings, mtl)  # (``mtl`` is reused below for groups)
    records = report_records(records, key)
    groups, problems = aggregate(records)
    default = [g for g in groups if not g.variant and g.target_fraction is None
               and g.support_ratio is None]
    pairs = {(g.method, g.target, g.support[0]): g for g in default
             if g.method in PAIRWISE and len(g.support) == 1}
    singles = {g.target: g for g in default if g.method == "single" and not g.support}
    mtl_all = [g for g in groups if g.method == "mtl_all"]
    size_groups = [g for g in groups if g.method in PAIRWISE and
                   (g.target_fraction is not None or g.support_ratio is not None)]
    used = set(map(id, [*pairs.values(), *singles.values(), *mtl_all, *size_groups]))
    others = [g for g in groups if id(g) not in used]

    sizes = task_sizes(records)
    baselines = {t: b * POINTS for t, b in _most_common(
        (t, b) for r in records for t, b in r.baseline_scores.items()).items()}
    symmetric = symmetric_groups(records)
    cells: dict[tuple[str, str], Cell] = {}
    for target, support in sorted({(t, s) for _, t, s in pairs} | set(symmetric)):
        mtl = pairs.get(("mtl", target, support)) or symmetric.get((target, support))
        stilts = pairs.get(("stilts", target, support))
        t_size, s_size = _pair_sizes(target, support, mtl, stilts, sizes)
        cell = Cell(target, support, mtl, stilts, t_size, s_size,
                    heuristic=size_heuristic(t_size, s_size))
        cell.refusals = [p for g in (mtl, stilts) if g
                         for p in pooling_problems(g.describe(), g.records)]
        cell.sequential = any(r.added_until_decided for r in (stilts.records if stilts else []))
        cell.passes = cell_passes(target, support, mtl, stilts, singles.get(support))
        problems += [p for p in cell.refusals if p not in problems]
        if cell.complete:
            cell.stats = cell_stats(_points(mtl), _points(stilts), "welch" if welch else "student",
                                    alpha, margin)
            if target in baselines:
                cell.at_baseline = all(abs(g.mean - baselines[target]) <= BASELINE_MARGIN
                                       for g in (mtl, stilts))
        cells[(target, support)] = cell
    decide(cells.values(), correction, alpha)
    if aso:
        almost_stochastic_order(cells.values(), alpha, correction)

    tasks = {t for pair in cells for t in pair} | set(singles)
    # Seeds --until-decided gave only to open cells are not asked of every run (missing.py).
    seen_seeds = {r.seed for g in [*pairs.values(), *singles.values(), *mtl_all] for r in g.records
                  if not r.added_until_decided}
    return Analysis(
        model=model, alpha=alpha, welch=welch, tasks=order_tasks(tasks, sizes), cells=cells,
        singles=singles, mtl_all=mtl_all, size_groups=size_groups, others=others, sizes=sizes,
        expected_seeds=expected_seeds(seen_seeds), warnings=problems, protocol=protocol,
        main_metrics=main_metrics(records),
        task_files=sorted({f for r in records for f in r.task_files}),
        variant=variant, settings=settings, records=records, baselines=baselines,
        correction=correction, equivalence_margin=margin, aso=aso, mtl=key.mtl,
    )


def _points(group: Group) -> list[float]:
    return [score * POINTS for score in group.scores]


def expected_seeds(seen: set[int]) -> list[int]:
    """The seeds every group should have: those seen; the paper's five if fewer than two are."""
    return sorted(seen) if len(seen) > 1 else sorted(seen | set(DEFAULT_SEEDS))


def order_tasks(tasks: set[str] | list[str], sizes: dict[str, int | None]) -> list[str]:
    """By descending training size (the paper's Figure 1 order), GLUE's order breaking ties."""
    def key(task: str) -> tuple:
        glue = GLUE_TASK_NAMES.index(task) if task in GLUE_TASKS else len(GLUE_TASKS)
        return (-(sizes.get(task) or 0), glue, task)

    return sorted(tasks, key=key)


def task_sizes(records: list[RunRecord], glue: bool = True) -> dict[str, int | None]:
    """Each task's training size as used in the default runs of a report (most common; records
    as ``variants.report_records`` gives them), else GLUE's (unless ``glue`` is False), else as
    any run used it (a task-file task trained only in variants, e.g. MTL_All on chosen tasks)."""
    default = [r for r in records if not (r.variant or r.is_size_experiment)]
    return {**_most_common((t, n) for r in records for t, n in r.train_sizes.items()),
            **({t: GLUE_TASKS[t].train_size for t in GLUE_TASKS} if glue else {}),
            **_most_common((t, n) for r in default for t, n in r.train_sizes.items())}


def main_metrics(records: list[RunRecord]) -> dict[str, str]:
    """Each task's main metric as its records name it (most common), else GLUE's."""
    return {**{t: GLUE_TASKS[t].main_metric for t in GLUE_TASKS},
            **_most_common((t, m) for r in records for t, m in r.main_metrics.items())}


def _most_common(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """task -> its most common value among ``(task, value)`` pairs."""
    seen: dict[str, Counter] = defaultdict(Counter)
    for task, value in pairs:
        seen[task][value] += 1
    return {task: counts.most_common(1)[0][0] for task, counts in seen.items()}


def _pair_sizes(target: str, support: str, mtl: Group | None, stilts: Group | None,
                sizes: dict[str, int | None]) -> tuple[int | None, int | None]:
    """The sizes an MTL run of the pair actually used, else the model-wide sizes."""
    for group in (mtl, stilts):
        for rec in group.records if group else []:
            if target in rec.train_sizes and support in rec.train_sizes:
                return rec.train_sizes[target], rec.train_sizes[support]
    return sizes.get(target), sizes.get(support)

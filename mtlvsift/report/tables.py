"""The paper's tables, built from an ``Analysis``: numbers in points, best values marked.

Table 1 compares, per target and on average: the single-task baseline, MTL_All for each sampling
present, the average over supporting tasks of STILTs and of pairwise MTL, the average of the
method the size heuristic picks, and the pairwise oracle (best supporting task with its better
method). Table 2 names the best supporting task of each method per target. Pairwise rows use the
cells where both methods ran, so that their averages cover the same supporting tasks.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from mtlvsift.report.stats import Analysis, Cell, Group
from mtlvsift.report.variants import variant_parts
from mtlvsift.tasks import GLUE_TASK_NAMES, display_name


@dataclass
class TableRow:
    label: str
    values: list[float | None]  # points, one per column
    notes: list[str | None] = field(default_factory=list)  # e.g. the oracle's choice


@dataclass
class Table:
    key: str  # file stem: "table1"
    title: str
    caption: str
    columns: list[str]
    rows: list[TableRow]
    mark: str = "column"  # best value marked in each "column" or each "row"

    def notes_line(self) -> str:
        """The per-column notes of a column-marked table, e.g. the oracle's choices."""
        notes = [f"{c}: {n}" for row in self.rows if self.mark == "column"
                 for c, n in zip(self.columns, row.notes) if n]
        return f"Pairwise oracle's choice: {'; '.join(notes)}." if notes else ""

    def best(self) -> set[tuple[int, int]]:
        """(row, column) positions holding the best value of their column (or row)."""
        marked: set[tuple[int, int]] = set()
        if self.mark == "column":
            lines = [[(i, j) for i in range(len(self.rows))] for j in range(len(self.columns))]
        else:
            lines = [[(i, j) for j in range(len(self.columns))] for i in range(len(self.rows))]
        for line in lines:
            values = [self.rows[i].values[j] for i, j in line]
            present = [v for v in values if v is not None]
            if len(present) > 1:
                top = max(present)
                marked.update(pos for pos, v in zip(line, values) if v == top)
        return marked


@dataclass(frozen=True)
class PairwiseSummary:
    """One target's pairwise numbers over its complete cells."""

    supports: list[str]
    avg_stilts: float
    avg_mtl: float
    heuristic: float | None
    oracle: float
    oracle_choice: str  # e.g. "MTL + MNLI"
    best_stilts: tuple[float, str]
    best_mtl: tuple[float, str]


def pairwise_summary(analysis: Analysis, target: str) -> PairwiseSummary | None:
    cells = [c for c in analysis.cells.values() if c.target == target and c.complete]
    if not cells:
        return None
    cells.sort(key=lambda c: analysis.tasks.index(c.support))
    picked = [_picked(c) for c in cells if c.heuristic is not None]
    best_stilts = max(cells, key=lambda c: c.stilts.mean)
    best_mtl = max(cells, key=lambda c: c.mtl.mean)
    use_mtl = best_mtl.mtl.mean > best_stilts.stilts.mean
    best_cell = best_mtl if use_mtl else best_stilts
    return PairwiseSummary(
        supports=[c.support for c in cells],
        avg_stilts=statistics.fmean(c.stilts.mean for c in cells),
        avg_mtl=statistics.fmean(c.mtl.mean for c in cells),
        heuristic=statistics.fmean(picked) if picked else None,
        oracle=max(best_mtl.mtl.mean, best_stilts.stilts.mean),
        oracle_choice=f"{'MTL' if use_mtl else 'STILTs'} + {display_name(best_cell.support)}",
        best_stilts=(best_stilts.stilts.mean, display_name(best_stilts.support)),
        best_mtl=(best_mtl.mtl.mean, display_name(best_mtl.support)),
    )


def table1(analysis: Analysis) -> Table:
    summaries = {t: pairwise_summary(analysis, t) for t in analysis.all_tasks}
    rows: list[tuple[str, dict[str, float], dict[str, str]]] = []
    if analysis.singles:
        rows.append(("Single task", {t: g.mean for t, g in analysis.singles.items()}, {}))
    for sampling, variant in analysis.mtl_all_samplings():
        groups = [g for g in analysis.mtl_all if (g.sampling, g.variant) == (sampling, variant)]
        rows.append((mtl_all_label(groups), {g.target: g.mean for g in groups}, {}))
    done = {t: s for t, s in summaries.items() if s is not None}
    if done:
        rows.append(("Avg. STILTs", {t: s.avg_stilts for t, s in done.items()}, {}))
        rows.append(("Avg. MTL", {t: s.avg_mtl for t, s in done.items()}, {}))
        rows.append(("Size heuristic", {t: s.heuristic for t, s in done.items()
                                        if s.heuristic is not None}, {}))
        rows.append(("Pairwise oracle", {t: s.oracle for t, s in done.items()},
                     {t: s.oracle_choice for t, s in done.items()}))
    targets = [t for t in analysis.all_tasks if any(t in values for _, values, _ in rows)]
    common = [t for t in targets if all(t in values for _, values, _ in rows)]
    caption = ("Dev scores in points, mean over seeds; pairwise rows average over the supporting "
               "tasks where both STILTs and MTL ran. Best of each column in bold.")
    if common != targets:
        caption += (f" Mean over {', '.join(map(display_name, common))} (the targets every row has)."
                    if common else " No target has every row, so no mean.")
    table_rows = []
    for label, values, notes in rows:
        mean = statistics.fmean(values[t] for t in common) if common else None
        table_rows.append(TableRow(label, [values.get(t) for t in targets] + [mean],
                                   [notes.get(t) for t in targets] + [None]))
    return Table("table1", "Table 1: transfer methods per target", caption,
                 [display_name(t) for t in targets] + ["Mean"], table_rows, mark="column")


def table2(analysis: Analysis) -> Table:
    rows = []
    means: list[list[float]] = []
    for target in analysis.tasks:
        summary = pairwise_summary(analysis, target)
        if summary is None:
            continue
        single = analysis.singles.get(target)
        values = [single.mean if single else None, summary.best_stilts[0], summary.best_mtl[0]]
        rows.append(TableRow(display_name(target), values,
                             [None, summary.best_stilts[1], summary.best_mtl[1]]))
        if single:
            means.append(values)
    if means:
        rows.append(TableRow("Mean", [statistics.fmean(col) for col in zip(*means)], [None] * 3))
    return Table("table2", "Table 2: best supporting task per target",
                 "Best mean over seeds of each method across supporting tasks (in brackets); "
                 "best of each row in bold. Mean over the targets with a single-task run.",
                 ["Single task", "Best STILTs", "Best MTL"], rows, mark="row")


def mtl_all_label(groups: list[Group]) -> str:
    """'MTL_All (size)', 'MTL_All (size, RTE+MRPC)' for other tasks than GLUE's nine, with the
    rest of the variant in brackets: 'MTL_All (dynamic) [rule-normalized]'."""
    sampling, variant = groups[0].sampling, groups[0].variant
    tasks = groups[0].records[0].tasks
    parts = [sampling or "default"]
    if sorted(tasks) != sorted(GLUE_TASK_NAMES):
        parts.append("+".join(display_name(t) for t in tasks))
    rest = [p for p in variant_parts(variant) if not p.startswith(("sampling-", "tasks-"))]
    return f"MTL_All ({', '.join(parts)})" + (f" [{'_'.join(rest)}]" if rest else "")


def _picked(cell: Cell) -> float:
    return cell.mtl.mean if cell.heuristic == "mtl" else cell.stilts.mean

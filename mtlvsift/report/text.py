"""Text shared by the terminal report and the report files: number formats, phrases."""

from __future__ import annotations

import math
from pathlib import Path

from mtlvsift.report.stats import PAPER_HEURISTIC, Analysis, Group
from mtlvsift.run_index import Discovery
from mtlvsift.tasks import display_name

HEURISTIC_RULE = "MTL when the target's training set is smaller than the supporting one"
PAPER_PHRASE = "{}/{}, {:.1%}".format(*PAPER_HEURISTIC, PAPER_HEURISTIC[0] / PAPER_HEURISTIC[1])
METHOD_NAMES = {"mtl": "pairwise MTL", "stilts": "STILTs"}


def fmt(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def group_text(group: Group | None) -> str:
    """'84.2 ± 0.3 (n=5)'."""
    if group is None:
        return "—"
    spread = f" ± {group.std:.1f}" if group.std is not None else ""
    return f"{group.mean:.1f}{spread} (n={group.n})"


def overview_line(a: Analysis, found: Discovery, outputs: Path) -> str:
    runs = sum(r.model == a.model and r.protocol == a.protocol for r in found.records)
    sizes = sorted({g.n for c in a.cells.values() for g in (c.mtl, c.stilts) if g})
    seeds = (f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}") if sizes else "no"
    plural = "" if sizes == [1] else "s"
    return (f"{runs} run record{'' if runs == 1 else 's'} of {a.model} under `{outputs}` · "
            f"{a.test_name}, alpha = {a.alpha:g} · {seeds} seed{plural} per pairwise group")


def tasks_line(a: Analysis) -> str:
    """'Tasks (training examples, main metric): RTE 2,490 accuracy · MYSENT 48 f1'."""
    parts = []
    for task in a.all_tasks:
        size = a.sizes.get(task)
        parts.append(f"{display_name(task)} {'?' if size is None else f'{size:,}'} "
                     f"{a.main_metrics.get(task, '?')}")
    return "Tasks (training examples, main metric): " + " · ".join(parts)

"""How often each method showed a cell's tasks their data: the mean passes per epoch over the
seeds (the records' ``passes_per_epoch``), for the target and the supporting task.

Pairwise MTL shows both in one run, as its sampling and epoch rules decide (docs/fidelity.md,
"regimes"); STILTs shows the target in its own run and the supporting task in the single runs
it started from (the report's single runs of that task). None where a record predates the field
or the runs are missing.
"""

from __future__ import annotations

import statistics
from typing import Any

Group = Any  # a stats.Group (its ``records``); stats.py imports this module, not the reverse

SIDES = ("target", "support")


def group_passes(group: Group | None, task: str) -> float | None:
    """The mean over the group's seeds of ``task``'s mean passes per epoch (None: unknown)."""
    if group is None or not group.records:
        return None
    means = [record.mean_passes for record in group.records]
    if any(m is None or task not in m for m in means):
        return None
    return statistics.fmean(m[task] for m in means)


def cell_passes(target: str, support: str, mtl: Group | None, stilts: Group | None,
                support_singles: Group | None) -> dict[str, dict[str, float | None]]:
    """``{"mtl": {"target": ..., "support": ...}, "stilts": {...}}`` for one cell."""
    return {"mtl": {"target": group_passes(mtl, target), "support": group_passes(mtl, support)},
            "stilts": {"target": group_passes(stilts, target),
                       "support": group_passes(support_singles, support)}}


def passes_text(passes: dict[str, float | None]) -> str:
    """``1 · 0.0063``: the target's and the support's passes per epoch, 3 significant digits."""
    return " · ".join("–" if passes.get(side) is None else f"{passes[side]:.3g}" for side in SIDES)

"""Runs that learned nothing: per configuration, the seeds whose score sits at or below their
task's majority-class baseline (within ``BASELINE_MARGIN``). A cell's ``~`` needs both of its
means there; this flag is on the runs themselves, whatever their cell (issue 25: every WNLI run
of a capped experiment sat at its baseline, and nothing said so outside the cells).
"""

from __future__ import annotations

from dataclasses import dataclass

from mtlvsift.report.stats import BASELINE_MARGIN, POINTS, Analysis, Group


@dataclass(frozen=True)
class AtBaseline:
    """The seeds of one configuration at or below the baseline."""

    group: Group
    seeds: tuple[int, ...]
    baseline: float | None  # points: the report's baseline of the group's task

    def record(self) -> dict:
        g = self.group
        return {"method": g.method, "target": g.target, "support": list(g.support),
                "variant": g.variant, "sampling": g.sampling, "symmetric": g.symmetric,
                "seeds": sorted(self.seeds), "n": g.n, "baseline": self.baseline}


def report_groups(a: Analysis) -> list[Group]:
    """Every configuration of a report once: singles, the cells' MTL and STILTs (in the
    matrix's order), MTL_All, the size experiments, the other runs."""
    cells = [g for key in a.ordered_cells() for g in (a.cells[key].mtl, a.cells[key].stilts) if g]
    singles = [a.singles[t] for t in a.all_tasks if t in a.singles]
    groups = [*singles, *cells, *a.mtl_all, *a.size_groups, *a.others]
    return list({id(g): g for g in groups}.values())


def runs_at_baseline(a: Analysis) -> list[AtBaseline]:
    """The configurations with seeds at or below their task's baseline (each seed against the
    baseline its own record holds, else the report's)."""
    flagged = []
    for group in report_groups(a):
        seeds = []
        for record, score in zip(group.records, group.scores):
            own = record.baseline_scores.get(group.target)
            baseline = own * POINTS if own is not None else a.baselines.get(group.target)
            if baseline is not None and score * POINTS <= baseline + BASELINE_MARGIN:
                seeds.append(record.seed)
        if seeds:
            flagged.append(AtBaseline(group, tuple(seeds), a.baselines.get(group.target)))
    return flagged

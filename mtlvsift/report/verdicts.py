"""Each cell's verdict and the heuristic's accuracy under each correction (issue 20).

A cell is ``decided`` (its p value, after the report's correction over all its tested cells,
is below alpha), ``equivalent`` (not decided, and a TOST at +-margin points passes at alpha) or
``open`` (neither, or degenerate: too few seeds or no variance, then it has no p value at all).
The statistics themselves are in ``inference.py``; this module only applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from mtlvsift.report import inference

VERDICTS = ("decided", "equivalent", "open")
DEFAULT_MARGIN = 0.5  # points: the TOST's equivalence margin


@dataclass
class CellStats:
    """The statistics of one complete cell, in points (MTL minus STILTs)."""

    reason: str | None = None  # why there is no p value (degenerate cell)
    mtl_scores: tuple[float, ...] = ()  # the seeds' scores the tests read
    stilts_scores: tuple[float, ...] = ()
    t: float | None = None
    p: float | None = None
    diff_ci_t: tuple[float, float] | None = None
    diff_ci_boot: tuple[float, float] | None = None
    hedges_g: float | None = None
    mde: float | None = None  # minimum detectable effect at 80% power, points
    p_tost: float | None = None
    p_holm: float | None = None
    p_bh: float | None = None
    verdict: str = "open"
    # Almost stochastic order (compare.py --aso): eps_min of the method with the higher mean over
    # the other, and that method when eps_min is below inference.ASO_THRESHOLD.
    aso: float | None = None
    aso_better: str | None = None

    def corrected(self, correction: str) -> float | None:
        return {"none": self.p, "holm": self.p_holm, "bh": self.p_bh}[correction]


class Cell(Protocol):
    """What this module reads and sets of ``stats.Cell`` (which imports this module)."""

    stats: CellStats | None
    heuristic: str | None
    t: float | None
    p: float | None
    significant: bool
    better: str | None

    @property
    def complete(self) -> bool: ...

    @property
    def diff(self) -> float | None: ...


def cell_stats(mtl: list[float], stilts: list[float], test: str, alpha: float,
               margin: float) -> CellStats:
    """Everything but the corrections, from the two methods' seed scores in points."""
    reason = inference.degenerate_reason(mtl, stilts)
    scores = {"mtl_scores": tuple(mtl), "stilts_scores": tuple(stilts)}
    if reason is not None:
        return CellStats(reason=reason, **scores)
    t, p, ci = inference.t_test(mtl, stilts, test, 1 - alpha)
    return CellStats(
        **scores, t=t, p=p, diff_ci_t=ci,
        diff_ci_boot=inference.bootstrap_interval(mtl, stilts, 1 - alpha),
        hedges_g=inference.hedges_g(mtl, stilts),
        mde=inference.minimum_detectable_effect(
            inference.pooled_sd(mtl, stilts), len(mtl), len(stilts), alpha),
        p_tost=inference.tost(mtl, stilts, margin, test))


def decide(cells: Iterable[Cell], correction: str, alpha: float) -> None:
    """Correct the p values over the tested cells of one report, then give each a verdict
    (and set ``significant``/``better`` by the chosen correction)."""
    tested = [c for c in cells if c.stats is not None]
    p_values = [c.stats.p for c in tested]
    for name in ("holm", "bh"):
        for cell, p in zip(tested, inference.adjust(p_values, name)):
            setattr(cell.stats, f"p_{name}", p)
    for cell in tested:
        cell.t, cell.p = cell.stats.t, cell.stats.p
        cell.significant = _below(cell.stats.corrected(correction), alpha)
        cell.better = ("mtl" if cell.diff > 0 else "stilts") if cell.significant else None
        passes_tost = cell.stats.p_tost is not None and cell.stats.p_tost < alpha
        cell.stats.verdict = ("decided" if cell.significant
                              else "equivalent" if passes_tost else "open")


def almost_stochastic_order(cells: Iterable[Cell], alpha: float, correction: str) -> None:
    """deepsig's ASO for every tested cell, the method with the higher mean as A, at confidence
    1 - alpha; under a correction deepsig's own Bonferroni over the tested cells (stricter than
    Holm or BH: deepsig offers no other)."""
    tested = [c for c in cells if c.stats is not None and c.stats.p is not None]
    comparisons = len(tested) if correction != "none" else 1
    for cell in tested:
        ahead, behind = ("mtl", "stilts") if cell.diff >= 0 else ("stilts", "mtl")
        groups = {"mtl": cell.stats.mtl_scores, "stilts": cell.stats.stilts_scores}
        cell.stats.aso = inference.aso_violation(groups[ahead], groups[behind], 1 - alpha,
                                                 comparisons)
        cell.stats.aso_better = ahead if cell.stats.aso < inference.ASO_THRESHOLD else None


@dataclass(frozen=True)
class Accuracy:
    """How often the heuristic named the better method, with its Wilson interval."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.total if self.total else None

    @property
    def wilson_ci(self) -> tuple[float, float] | None:
        return inference.wilson_interval(self.correct, self.total)

    @property
    def above_chance(self) -> bool:
        """The paper's conclusion holds: the interval lies above 50%."""
        return self.wilson_ci is not None and self.wilson_ci[0] > 0.5

    def record(self) -> dict:
        ci = self.wilson_ci
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy,
                "wilson_ci": list(ci) if ci else None}


@dataclass(frozen=True)
class HeuristicScore(Accuracy):
    """The report's count: significant cells the size rule got right, of those it predicted;
    ``ties``: significant cells whose two training sets have the same size (no prediction)."""

    ties: int = 0

    def phrase(self) -> str:
        """The paper's wording: 'predicts 49/53 significant cells, 92.5%', and the ties."""
        ties = ""
        if self.ties:
            are = "is a size tie" if self.ties == 1 else "are size ties"
            ties = (f" ({self.ties} significant cell{'s' * (self.ties > 1)} {are}: equal "
                    f"training sets, not counted)")
        if not self.total:
            return "no significant cells to predict yet" + ties
        return f"predicts {self.correct}/{self.total} significant cells, {self.accuracy:.1%}{ties}"


def heuristic_by_correction(cells: Iterable[Cell], alpha: float) -> dict[str, Accuracy]:
    """The heuristic's accuracy over the cells significant under each correction."""
    cells = [c for c in cells if c.stats is not None and c.heuristic is not None]
    result = {}
    for correction in inference.CORRECTIONS:
        result[correction] = _accuracy([c for c in cells if _below(
            c.stats.corrected(correction), alpha)])
    return result


def _below(p: float | None, alpha: float) -> bool:
    return p is not None and p < alpha


def heuristic_by_sign(cells: Iterable[Cell]) -> Accuracy:
    """The heuristic's accuracy over every complete cell, by the sign of the mean difference."""
    return _accuracy([c for c in cells if c.complete and c.heuristic is not None and c.diff])


def _accuracy(cells: list[Cell]) -> Accuracy:
    right = sum(c.heuristic == ("mtl" if c.diff > 0 else "stilts") for c in cells)
    return Accuracy(right, len(cells))

"""The paper's figures with matplotlib (Agg, no display): Figure 1, the MTL vs STILTs matrix, and
Figure 2, score against the supporting-to-target size ratio in the size experiments.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot global state) and returned as PNG
bytes, so that the caller writes them atomically; None when there is nothing to draw (the report
says so in one line instead: ``text.FIGURE1_EMPTY``, ``text.FIGURE2_EMPTY``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from mtlvsift.report.stats import Analysis, Cell, Group
from mtlvsift.report.text import CORRECTION_NAMES, report_name
from mtlvsift.tasks import display_name

MTL_COLOR = "#6baed6"  # decided: MTL better (after the report's correction)
STILTS_COLOR = "#fdae6b"  # decided: STILTs better
EQUIVALENT_COLOR = "#c7e9c0"  # equivalent: the TOST at the report's margin passes
OPEN_COLOR = "#f4f4f4"  # open: neither decided nor equivalent (or no test at all)
OPEN_HATCH_COLOR = "#d4d4d4"
EMPTY_COLOR = "#ffffff"  # cell not run yet
DIAGONAL_COLOR = "#d9d9d9"
MISS_COLOR = "#b2182b"  # the paper's red text: the size heuristic predicted the other method
LINE_COLORS = {"mtl": "#2171b5", "stilts": "#e6550d"}
METHOD_LABELS = {"mtl": "MTL", "stilts": "STILTs"}
_MARKERS = {"mtl": "o", "stilts": "s"}
_LINES = {"mtl": "-", "stilts": "--"}
UNCORRECTED_MARK = "†"  # significant before the correction only
# Figure 2: the two methods' points at the same K are drawn this factor apart on the log axis.
SIDE_BY_SIDE = 1.06
DPI = 150


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class CellStyle:
    """How Figure 1 draws one cell."""

    fill: str
    text: str = ""
    note: str = ""  # a small second line: 'open', 'no test', 'equivalent'
    hatched: bool = False  # open cells
    bold: bool = False  # decided cells
    miss: bool = False  # the size heuristic named the other (decided) method: red


def cell_style(cell: Cell | None, diagonal: bool, correction: str, alpha: float) -> CellStyle:
    """The verdict drawn: decided cells in their method's colour, equivalent cells green, open
    cells hatched grey (marked † where the uncorrected p value was below alpha)."""
    if diagonal:
        return CellStyle(DIAGONAL_COLOR, "—")
    if cell is None:
        return CellStyle(EMPTY_COLOR)
    if not cell.complete:
        return CellStyle(EMPTY_COLOR, "MTL only" if cell.mtl else "STILTs only")
    text = f"{cell.diff:+.1f}" + ("~" if cell.at_baseline else "")
    if cell.verdict == "decided":
        return CellStyle(MTL_COLOR if cell.better == "mtl" else STILTS_COLOR, text, bold=True,
                         miss=cell.heuristic_correct is False)
    if cell.verdict == "equivalent":
        return CellStyle(EQUIVALENT_COLOR, text, note="equivalent")
    uncorrected = (correction != "none" and cell.stats is not None and cell.stats.p is not None
                   and cell.stats.p < alpha)
    return CellStyle(OPEN_COLOR, text + (UNCORRECTED_MARK if uncorrected else ""),
                     note="no test" if cell.stats is None or cell.stats.p is None else "open",
                     hatched=True)


def figure1(analysis: Analysis) -> bytes | None:
    """The matrix: rows targets, columns supports, cell = MTL - STILTs in points, coloured by
    its verdict under the report's test and correction."""
    tasks = analysis.tasks
    n = len(tasks)
    if not analysis.cells:
        return None
    # Margins in inches, so that labels fit whatever the number of tasks.
    top, bottom, left, right, side = 1.3, 1.35, 1.1, 0.3, 0.62
    width, height = max(6.5, left + right + side * n), top + bottom + side * n
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height)
    ax = fig.add_subplot()
    for i, target in enumerate(tasks):
        for j, support in enumerate(tasks):
            style = cell_style(analysis.cell(target, support), i == j, analysis.correction,
                               analysis.alpha)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=style.fill,
                                   edgecolor="white"))
            if style.hatched:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="////",
                                       edgecolor=OPEN_HATCH_COLOR, linewidth=0))
            if style.miss:  # a red frame as well as red text, readable on either colour
                ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False,
                                       edgecolor=MISS_COLOR, linewidth=1.6))
            ax.text(j, i - (0.12 if style.note else 0), style.text, ha="center", va="center",
                    fontsize=9 if len(style.text) < 6 else 6,
                    color=MISS_COLOR if style.miss else "#222222",
                    fontweight="bold" if style.miss or style.bold else "normal",
                    bbox={"facecolor": style.fill, "edgecolor": "none", "pad": 0.5}
                    if style.hatched else None)
            if style.note:
                ax.text(j, i + 0.24, style.note, ha="center", va="center", fontsize=5.5,
                        color="#555555")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(n), [display_name(t) for t in tasks], rotation=45, ha="left")
    ax.set_yticks(range(n), [display_name(t) for t in tasks])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("Supporting task")
    ax.set_ylabel("Target task")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(f"MTL − STILTs (points), {report_name(analysis)}", fontsize=11,
                 y=1 - 0.12 / height, va="top")
    fig.legend(handles=_figure1_legend(analysis), loc="lower center", ncol=2, fontsize=7.5,
               frameon=False, bbox_to_anchor=(0.5, 0.42 / height))
    baseline = ("  ~: both methods at the majority-class baseline."
                if any(c.at_baseline for c in analysis.cells.values()) else "")
    fig.text(0.5, 0.1 / height, f"{analysis.test_name}, alpha = {analysis.alpha:g}, "
             f"{CORRECTION_NAMES[analysis.correction]}.{baseline}\nSize heuristic "
             f"{analysis.heuristic.phrase()}.", ha="center", va="bottom", fontsize=8)
    return png_bytes(fig)


def _figure1_legend(analysis: Analysis) -> list[Patch]:
    after = "" if analysis.correction == "none" else f", {CORRECTION_NAMES[analysis.correction]}"
    handles = [
        Patch(facecolor=MTL_COLOR, label=f"decided: MTL better (p < {analysis.alpha:g}{after})"),
        Patch(facecolor=STILTS_COLOR, label=f"decided: STILTs better (p < {analysis.alpha:g}{after})"),
        Patch(facecolor=EQUIVALENT_COLOR,
              label=f"equivalent (TOST, ±{analysis.equivalence_margin:g} points)"),
        Patch(facecolor=OPEN_COLOR, edgecolor=OPEN_HATCH_COLOR, hatch="////",
              label="open: undecided, or no test (< 3 seeds)"),
        Patch(facecolor="white", edgecolor=MISS_COLOR, label="size heuristic wrong (red)"),
    ]
    if analysis.correction != "none":
        handles.append(Patch(facecolor="white", edgecolor="white",
                             label=f"{UNCORRECTED_MARK} p < {analysis.alpha:g} before correction"))
    return handles


@dataclass(frozen=True)
class SizeSeries:
    """One method's line in a Figure 2 panel, in points."""

    method: str
    ratios: list[float]  # K, where the points belong
    x: list[float]  # K moved aside, so that the two methods do not hide each other
    means: list[float]
    lower: list[float]  # mean minus the interval's low end (0 with one seed)
    upper: list[float]
    seeds: list[int]  # n per point


def size_series(panel: list[Group]) -> list[SizeSeries]:
    """Each method's mean and percentile bootstrap 90% interval at each K: MTL drawn just left
    of K, STILTs just right."""
    series = []
    for method, shift in (("mtl", 1 / SIDE_BY_SIDE), ("stilts", SIDE_BY_SIDE)):
        line = sorted((g for g in panel if g.method == method), key=lambda g: g.support_ratio)
        if not line:
            continue
        intervals = [g.ci90_boot() or (g.mean, g.mean) for g in line]
        series.append(SizeSeries(
            method, [g.support_ratio for g in line], [g.support_ratio * shift for g in line],
            [g.mean for g in line], [g.mean - low for g, (low, _) in zip(line, intervals)],
            [high - g.mean for g, (_, high) in zip(line, intervals)], [g.n for g in line]))
    return series


def seeds_label(seeds: list[int]) -> str:
    """'n = 5' or 'n = 2-5' seeds per point."""
    low, high = min(seeds), max(seeds)
    return f"n = {low}" if low == high else f"n = {low}–{high}"


def figure2(analysis: Analysis) -> bytes | None:
    """Size experiments: one panel per (pair, target fraction), score vs support/target ratio."""
    groups = [g for g in analysis.size_groups if g.support_ratio is not None]
    if not groups:
        return None
    pairs = sorted({(g.target, g.support[0]) for g in groups})
    fractions = sorted({g.target_fraction for g in groups}, key=lambda f: (f is None, f or 0))
    rows, cols = len(pairs), len(fractions)
    fig = Figure(figsize=(1.0 + 4.2 * cols, 1.3 + 3.4 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey="row")
    seeds: dict[str, list[int]] = {}
    for r, (target, support) in enumerate(pairs):
        for c, fraction in enumerate(fractions):
            ax = axes[r][c]
            panel = [g for g in groups if (g.target, g.support[0], g.target_fraction)
                     == (target, support, fraction)]
            for series in _size_panel(ax, panel):
                seeds.setdefault(series.method, []).extend(series.seeds)
            used = next((rec.train_sizes.get(target) for g in panel for rec in g.records
                         if rec.train_sizes.get(target)), None)
            share = "all" if fraction is None else f"F = {fraction:g}"
            size = f", {used:,} examples" if used else ""
            ax.set_title(f"{display_name(target)} ({share}{size}), support {display_name(support)}",
                         fontsize=9)
            ax.set_xlabel("supporting / target training size (K)", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{display_name(target)} dev score (points)", fontsize=8)
    # One legend for the figure, below the panels: never over a point or an error bar.
    handles = [Line2D([], [], color=LINE_COLORS[m], marker=_MARKERS[m], linestyle=_LINES[m],
                      label=f"{METHOD_LABELS[m]} ({seeds_label(seeds[m])} seeds per point)")
               for m in ("mtl", "stilts") if m in seeds]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Size experiments: mean over seeds, percentile bootstrap 90% interval "
                 f"({report_name(analysis)})", fontsize=10)
    return png_bytes(fig)


def _size_panel(ax, panel: list[Group]) -> list[SizeSeries]:
    ratios = sorted({g.support_ratio for g in panel})
    drawn = size_series(panel)
    for series in drawn:
        ax.errorbar(series.x, series.means, yerr=[series.lower, series.upper],
                    color=LINE_COLORS[series.method], marker=_MARKERS[series.method],
                    linestyle=_LINES[series.method], capsize=3, markersize=4)
    ax.set_xscale("log")
    ax.set_xticks(ratios, [_ratio_label(r) for r in ratios])
    ax.minorticks_off()
    ax.axvline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    ax.grid(axis="y", color="#eeeeee")
    ax.tick_params(labelsize=8)
    return drawn


def _ratio_label(ratio: float) -> str:
    frac = Fraction(ratio).limit_denominator(12)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"

"""The paper's figures with matplotlib (Agg, no display): Figure 1, the MTL vs STILTs matrix, and
Figure 2, score against the supporting-to-target size ratio in the size experiments.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot global state) and returned as PNG
bytes, so that the caller writes them atomically; None when there is nothing to draw (the report
says so in one line instead: ``text.FIGURE1_EMPTY``, ``text.FIGURE2_EMPTY``).
"""

from __future__ import annotations

import io
from fractions import Fraction

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mtlvsift.report.stats import Analysis, Group
from mtlvsift.report.text import report_name
from mtlvsift.tasks import display_name

MTL_COLOR = "#6baed6"  # MTL significantly better
STILTS_COLOR = "#fdae6b"  # STILTs significantly better
NS_COLOR = "#f4f4f4"  # no significant difference (or no test)
EMPTY_COLOR = "#ffffff"  # cell not run yet
DIAGONAL_COLOR = "#d9d9d9"
MISS_COLOR = "#b2182b"  # the paper's red text: the size heuristic predicted the other method
LINE_COLORS = {"mtl": "#2171b5", "stilts": "#e6550d"}
DPI = 150


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def figure1(analysis: Analysis) -> bytes | None:
    """The matrix: rows targets, columns supports, cell = MTL - STILTs in points."""
    tasks = analysis.tasks
    n = len(tasks)
    if not analysis.cells:
        return None
    # Margins in inches, so that labels fit whatever the number of tasks.
    top, bottom, left, right, side = 1.3, 1.05, 1.1, 0.3, 0.62
    width, height = max(6.5, left + right + side * n), top + bottom + side * n
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                        bottom=bottom / height)
    ax = fig.add_subplot()
    for i, target in enumerate(tasks):
        for j, support in enumerate(tasks):
            cell = analysis.cell(target, support)
            color, text, miss = EMPTY_COLOR, "", False
            if i == j:
                color, text = DIAGONAL_COLOR, "—"
            elif cell is not None and cell.complete:
                color = {"mtl": MTL_COLOR, "stilts": STILTS_COLOR}.get(cell.better, NS_COLOR)
                text = f"{cell.diff:+.1f}" + ("~" if cell.at_baseline else "")
                miss = cell.heuristic_correct is False
            elif cell is not None:
                text = "MTL only" if cell.mtl else "STILTs only"
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=color, edgecolor="white"))
            if miss:  # a red frame as well as red text, readable on either colour
                ax.add_patch(Rectangle((j - 0.44, i - 0.44), 0.88, 0.88, fill=False,
                                       edgecolor=MISS_COLOR, linewidth=1.6))
            untested = cell is not None and cell.complete and cell.p is None
            ax.text(j, i - (0.12 if untested else 0), text, ha="center", va="center",
                    fontsize=9 if len(text) < 6 else 6,
                    color=MISS_COLOR if miss else "#222222",
                    fontweight="bold" if miss or (cell and cell.significant) else "normal")
            if untested:  # degenerate (fewer than 3 seeds, no variance): no t-test
                ax.text(j, i + 0.22, "no test", ha="center", va="center", fontsize=6,
                        color="#777777")
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
    alpha = f"{analysis.alpha:g}"
    fig.suptitle(f"MTL − STILTs (points), {report_name(analysis)}", fontsize=11,
                 y=1 - 0.12 / height, va="top")
    handles = [
        Patch(facecolor=MTL_COLOR, label=f"MTL better (p < {alpha})"),
        Patch(facecolor=STILTS_COLOR, label=f"STILTs better (p < {alpha})"),
        Patch(facecolor=NS_COLOR, edgecolor="#bbbbbb", label="no significant difference"),
        Patch(facecolor="white", edgecolor=MISS_COLOR, label="size heuristic wrong (red)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.42 / height))
    baseline = ("  ~: both methods at the majority-class baseline."
                if any(c.at_baseline for c in analysis.cells.values()) else "")
    fig.text(0.5, 0.1 / height, f"{analysis.test_name}.{baseline}\nSize heuristic "
             f"{analysis.heuristic.phrase()}.", ha="center", va="bottom", fontsize=8)
    return png_bytes(fig)


def figure2(analysis: Analysis) -> bytes | None:
    """Size experiments: one panel per (pair, target fraction), score vs support/target ratio."""
    groups = [g for g in analysis.size_groups if g.support_ratio is not None]
    if not groups:
        return None
    pairs = sorted({(g.target, g.support[0]) for g in groups})
    fractions = sorted({g.target_fraction for g in groups}, key=lambda f: (f is None, f or 0))
    rows, cols = len(pairs), len(fractions)
    fig = Figure(figsize=(1.0 + 4.2 * cols, 0.9 + 3.4 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey="row")
    for r, (target, support) in enumerate(pairs):
        for c, fraction in enumerate(fractions):
            ax = axes[r][c]
            panel = [g for g in groups if (g.target, g.support[0], g.target_fraction)
                     == (target, support, fraction)]
            _size_panel(ax, panel)
            used = next((rec.train_sizes.get(target) for g in panel for rec in g.records
                         if rec.train_sizes.get(target)), None)
            share = "all" if fraction is None else f"F = {fraction:g}"
            size = f", {used:,} examples" if used else ""
            ax.set_title(f"{display_name(target)} ({share}{size}), support {display_name(support)}",
                         fontsize=9)
            ax.set_xlabel("supporting / target training size (K)", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{display_name(target)} dev score (points)", fontsize=8)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(f"Size experiments: mean over seeds with 90% CI ({report_name(analysis)})", fontsize=10)
    return png_bytes(fig)


def _size_panel(ax, panel: list[Group]) -> None:
    ratios = sorted({g.support_ratio for g in panel})
    for method, label in (("mtl", "MTL"), ("stilts", "STILTs")):
        line = sorted((g for g in panel if g.method == method), key=lambda g: g.support_ratio)
        if not line:
            continue
        errors = [g.ci90() or 0.0 for g in line]
        ax.errorbar([g.support_ratio for g in line], [g.mean for g in line], yerr=errors,
                    color=LINE_COLORS[method], marker="o" if method == "mtl" else "s",
                    linestyle="-" if method == "mtl" else "--", capsize=3, markersize=4,
                    label=f"{label} (90% CI)")
    ax.set_xscale("log")
    ax.set_xticks(ratios, [_ratio_label(r) for r in ratios])
    ax.minorticks_off()
    ax.axvline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    ax.grid(axis="y", color="#eeeeee")
    ax.tick_params(labelsize=8)


def _ratio_label(ratio: float) -> str:
    frac = Fraction(ratio).limit_denominator(12)
    return str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"

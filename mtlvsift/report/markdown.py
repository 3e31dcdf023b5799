"""report.md: the report as markdown (header lines, Figure 1's matrix, every cell's statistics,
the tables, the size experiments, recommend.py's evaluation, missing runs, skipped files). Text
from records or folder names goes through ``md_text``: it is untrusted."""

from __future__ import annotations

import html
from pathlib import Path

from mtlvsift.display import safe_text
from mtlvsift.report.exposure import passes_text
from mtlvsift.report.missing import MissingRun
from mtlvsift.report.stats import BASELINE_MARGIN, PAPER_HEURISTIC, Analysis
from mtlvsift.report.tables import Table
from mtlvsift.report.text import FIGURE1_EMPTY, FIGURE2_EMPTY, HEURISTIC_RULE, TIE_LEGEND, \
    aso_line, at_baseline_line, baselines_line, cell_name, corrections_line, few_seeds_line, fmt, \
    fmt_p, group_text, lacking_phrase, not_pooled_line, overview_line, relative_text, report_name, \
    seeds_phrase, selection_line, sequential_line, tasks_line
from mtlvsift.report.verdicts import CellStats
from mtlvsift.run_index import Discovery
from mtlvsift.tasks import display_name


def markdown_table(table: Table) -> str:
    best = table.best()
    lines = [f"| | {' | '.join(table.columns)} |", "|---" + "|---:" * len(table.columns) + "|"]
    for i, row in enumerate(table.rows):
        cells = []
        for j, value in enumerate(row.values):
            text = fmt(value)
            if j < len(row.notes) and row.notes[j] and table.mark == "row":
                text += f" ({row.notes[j]})"
            cells.append(f"**{text}**" if (i, j) in best else text)
        lines.append(f"| {row.label} | {' | '.join(cells)} |")
    text = f"**{table.title}.** {table.caption}\n\n" + "\n".join(lines)
    return text + (f"\n\n{table.notes_line()}" if table.notes_line() else "")


def markdown(analysis: Analysis, tables: list[Table], missing: list[MissingRun],
             found: Discovery, outputs: Path, figures: tuple[str, ...] | list[str] = (),
             recommender: dict | None = None, retrain: list[MissingRun] = ()) -> str:
    """report.md; ``figures``: the figure files written next to it; ``recommender``: the
    evaluation of recommend.py's saved rankings (``recommender_record``); ``retrain``: the
    commands that fix the cells not pooled."""
    a = analysis
    correct, total = PAPER_HEURISTIC
    paper = f"the paper: {correct}/{total}, {correct / total:.1%}"
    parts = [f"# MTL vs STILTs: {md_text(report_name(a))}", md_text(overview_line(a, outputs)),
             md_text(corrections_line(a)), md_text(selection_line(a))]
    parts += [md_text(line) for line in (few_seeds_line(a), sequential_line(a)) if line]
    parts.append(md_text(aso_line(a)))
    parts.append(md_text(tasks_line(a)))
    if baselines_line(a):
        parts.append(md_text(baselines_line(a)))
    if at_baseline_line(a):
        parts.append(md_text(at_baseline_line(a)))
    parts += ["## Figure 1: pairwise MTL minus STILTs",
              "![Figure 1](figure1.png)" if "figure1.png" in figures else FIGURE1_EMPTY,
              f"**Size heuristic** ({HEURISTIC_RULE}): {a.heuristic.phrase()} ({paper}).",
              _markdown_matrix(a)]
    misses = [c for c in a.cells.values() if c.heuristic_correct is False]
    if misses:
        parts.append("Heuristic wrong in: " + ", ".join(
            f"{display_name(c.target)} ← {display_name(c.support)} ({c.diff:+.1f}, "
            f"{'MTL' if c.heuristic == 'mtl' else 'STILTs'} predicted)" for c in misses) + ".")
    if a.cells:
        parts.append(_markdown_cells(a))
    if not_pooled_line(a):
        reasons = [f"- {cell_name(*key, arrow='←')}: {md_text(reason)}" for key in a.ordered_cells()
                   for reason in a.cells[key].refusals]
        parts += ["## Cells not pooled (≠)", md_text(not_pooled_line(a)), "\n".join(reasons),
                  "```sh\n" + "\n".join(m.command(outputs) for m in retrain) + "\n```"]
    parts.append("## Tables")
    parts += [markdown_table(t) for t in tables if t.rows] or ["No table rows yet."]
    parts += ["## Figure 2: size experiments",
              "![Figure 2](figure2.png)" if "figure2.png" in figures else FIGURE2_EMPTY]
    if a.size_groups:
        rows = ["| method | target | support | F | K | mean | 90% CI (t) | 90% CI (bootstrap) | n |",
                "|---" * 9 + "|"]
        for g in sorted(a.size_groups, key=lambda g: (g.target, g.support, g.target_fraction or 0,
                                                        g.support_ratio or 0, g.method)):
            rows.append(f"| {g.method} | {display_name(g.target)} | {display_name(g.support[0])} | "
                        f"{g.target_fraction} | {_ratio(g.support_ratio)} | {g.mean:.1f} | "
                        f"± {fmt(g.ci90())} | {_interval(g.ci90_boot(), signed=False)} | {g.n} |")
        parts.append(_details("Size-experiment groups", "\n".join(rows)))
    if a.others:
        rows = ["| run | seeds | mean ± std (n) |", "|---|---|---|"]
        rows += [f"| {md_text(g.describe())} | {', '.join(map(str, sorted(g.seeds)))} | {group_text(g)} |"
                 for g in a.others]
        parts += ["## Other runs (variants, several supports)", "\n".join(rows)]
    if recommender and recommender["targets"]:
        parts += ["## How good recommend.py's advice was", _markdown_recommender(recommender)]
    parts.append("## Missing runs")
    if missing:
        shown = missing[:40]
        parts.append(f"{lacking_phrase(len(missing))} (expected: "
                     f"{', '.join(map(str, a.expected_seeds))}); all commands are in "
                     "[missing.sh](missing.sh), single runs first.\n\n```sh\n"
                     + "\n".join(m.command(outputs) for m in shown)
                     + ("\n# ..." if len(missing) > len(shown) else "") + "\n```")
    else:
        parts.append(f"None: every configuration has every seed in use: {seeds_phrase(a)}.")
    if found.in_progress:
        parts += ["## Runs in progress (config.json, no result.json yet)",
                  "\n".join(f"- `{md_text(relative_text(r.path, found.root))}`" for r in found.in_progress)]
    warnings = found.warnings + a.warnings + (recommender or {}).get("warnings", [])
    if warnings:
        parts += ["## Skipped files", "\n".join(f"- {md_text(w)}" for w in warnings)]
    parts.append("Files: `cells.csv` (one row per cell), `matrix_diff.csv`, `matrix_p.csv`, "
                 "`table1.csv`, `table2.csv`, `summary.json`, `missing.sh`.")
    return "\n\n".join(parts) + "\n"


def _markdown_recommender(r: dict) -> str:
    rows = ["| target | supports | Spearman (LogME gain vs measured STILTs gain) | ranked first "
            "| best measured | regret@1 (points) |", "|---" * 6 + "|"]
    for target, t in r["targets"].items():
        rows.append(f"| {display_name(target)} | {len(t['supports'])} | {fmt(t['spearman'], 2)} | "
                    f"{display_name(t['top_ranked'])} | {display_name(t['best_measured'])} | "
                    f"{t['regret_at_1']:.2f} |")
    return ("The saved rankings of `scripts/recommend.py` (LogME gain) against the STILTs gains "
            "this grid measured (STILTs mean minus the single-task mean). Regret@1: the measured "
            "gain of the best measured support minus that of the support ranked first. Mean "
            f"Spearman {fmt(r['mean_spearman'], 2)}, mean regret@1 {fmt(r['mean_regret_at_1'], 2)} "
            "points.\n\n" + "\n".join(rows))


def _markdown_matrix(a: Analysis) -> str:
    if not a.cells:
        return "No cell has an MTL or a STILTs run yet."
    lines = ["| target \\ support | " + " | ".join(display_name(t) for t in a.tasks) + " |",
             "|---" + "|---:" * len(a.tasks) + "|"]
    for target in a.tasks:
        cells = []
        for support in a.tasks:
            cell = a.cell(target, support)
            if target == support:
                cells.append("—")
            elif cell is not None and cell.refused:
                cells.append("≠")
            elif cell is None or not cell.complete:
                cells.append("·")
            else:
                text = f"{cell.diff:+.1f}"
                text = f"**{text}**" if cell.significant else text
                cells.append(text + (" ✗" if cell.heuristic_correct is False else "")
                             + (" ~" if cell.at_baseline else "") + (" =" if cell.size_tie else ""))
        lines.append(f"| **{display_name(target)}** | " + " | ".join(cells) + " |")
    legend = (f"Bold: significant at p < {a.alpha:g} ({a.test_name}); positive = MTL better, "
              "negative = STILTs better; ✗: the size heuristic predicted the other method; "
              "·: not run yet; ≠: seeds not pooled (see *Cells not pooled*). A cell with fewer than 3 "
              "seeds of a method, or no variance, has no test.")
    if any(c.at_baseline for c in a.cells.values()):
        legend += (f" ~: both methods at the majority-class baseline (within {BASELINE_MARGIN:g} "
                   "points): nothing learned.")
    if any(c.size_tie for c in a.cells.values() if c.complete):
        legend += f" =: {TIE_LEGEND}."
    return "\n".join(lines) + "\n\n" + legend


def _markdown_cells(a: Analysis) -> str:
    aso = ["ASO ε"] if a.aso else []
    header = ["target", "support", "MTL", "STILTs", "diff", "90% CI (t)", "90% CI (bootstrap)",
              "g", "t", "p", "p Holm", "p BH", "MDE", *aso, "verdict", "better", "heuristic",
              "passes/epoch MTL", "passes/epoch STILTs"]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key in a.ordered_cells():
        c = a.cells[key]
        s = c.stats or CellStats()
        mtl = group_text(c.mtl) + (" (sym.)" if c.mtl and c.mtl.symmetric else "")
        values = [display_name(c.target), display_name(c.support), mtl, group_text(c.stilts),
                  fmt(c.diff, sign=True), _interval(s.diff_ci_t), _interval(s.diff_ci_boot),
                  fmt(s.hedges_g, 2), fmt(c.t, 2), fmt_p(c.p), fmt_p(s.p_holm), fmt_p(s.p_bh),
                  fmt(s.mde), *([_aso_text(s)] if a.aso else []),
                  _verdict_text(c.verdict, s.reason), c.better or "–",
                  c.heuristic or ("tie" if c.size_tie else "–"),
                  passes_text(c.passes.get("mtl", {})), passes_text(c.passes.get("stilts", {}))]
        rows.append("| " + " | ".join(values) + " |")
    aso_title = ", almost stochastic order (ε_min of the method ahead)" if a.aso else ""
    return _details("Every cell: means ± std over seeds, intervals of the difference, Hedges' g, "
                    "t-test, corrected p, minimum detectable effect (points, 80% power)"
                    f"{aso_title}, verdict, each method's mean passes per epoch over the target's "
                    "and the support's data (target · support; STILTs' support: its single runs)",
                    "\n".join(rows))


def _aso_text(stats: CellStats) -> str:
    if stats.aso is None:
        return "–"
    return f"{stats.aso:.2f}" + (f" ({stats.aso_better})" if stats.aso_better else "")


def _interval(pair: tuple[float, float] | None, signed: bool = True) -> str:
    """'[-1.2, +3.4]' for a difference; '[61.0, 64.2]' for a score (signed=False)."""
    spec = "+.1f" if signed else ".1f"
    return "–" if pair is None else f"[{pair[0]:{spec}}, {pair[1]:{spec}}]"


def _verdict_text(verdict: str | None, reason: str | None) -> str:
    return "–" if verdict is None else f"{verdict} ({reason})" if reason else verdict


def md_text(text: str) -> str:
    """Text from the records or the file system, shown as text in markdown: no raw HTML, one
    line, no control characters (a model name or a folder name is untrusted)."""
    return html.escape(safe_text(" ".join(str(text).split())), quote=False).replace("|", "\\|")


def _details(summary_text: str, body: str) -> str:
    return f"<details><summary>{summary_text}</summary>\n\n{body}\n\n</details>"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"

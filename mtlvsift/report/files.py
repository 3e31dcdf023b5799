"""The report folder: report.md, figure1.png, figure2.png, CSVs, summary.json and missing.sh.

Every file is written atomically (``run_folder.atomic_write``: a temporary file in the same
folder, then a rename), so a reader never sees a half-written report. Numbers are in points
(x100); nothing depends on the clock, so the same runs give the same files. A figure with nothing
to draw is not written (and one left by an earlier report is removed): report.md says so.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path

from mtlvsift import __version__
from mtlvsift.display import safe_text
from mtlvsift.recommend.evaluation import evaluate, load_rankings
from mtlvsift.report.missing import MissingRun
from mtlvsift.report.stats import BASELINE_MARGIN, PAPER_HEURISTIC, Analysis, Cell, Group
from mtlvsift.report.tables import Table
from mtlvsift.report.text import FIGURE1_EMPTY, FIGURE2_EMPTY, HEURISTIC_RULE, aso_line, \
    baselines_line, corrections_line, few_seeds_line, fmt, fmt_p, group_text, lacking_phrase, \
    overview_line, report_name, seeds_phrase, sequential_line, tasks_line
from mtlvsift.report.verdicts import CellStats, heuristic_by_correction, heuristic_by_sign
from mtlvsift.run_folder import atomic_write, report_slug
from mtlvsift.run_index import Discovery
from mtlvsift.tasks import display_name



def write_report_dir(report_dir: Path, analysis: Analysis, tables: list[Table],
                     missing: list[MissingRun], found: Discovery, outputs: Path) -> list[Path]:
    """Write every file of one report; returns the paths written."""
    from mtlvsift.report import figures  # matplotlib only when files are written

    recommender = recommender_record(analysis, outputs)
    files: dict[str, str | bytes | None] = {
        "figure1.png": figures.figure1(analysis),
        "figure2.png": figures.figure2(analysis),
        "matrix_diff.csv": matrix_csv(analysis, lambda c: c.diff),
        "matrix_p.csv": matrix_csv(analysis, lambda c: c.p),
        "cells.csv": cells_csv(analysis),
        "summary.json": json.dumps(summary(analysis, tables, missing, found, outputs, recommender),
                                   indent=1),
        "missing.sh": missing_script(missing, outputs),
    }
    files.update({f"{t.key}.csv": table_csv(t) for t in tables})
    files["report.md"] = markdown(analysis, tables, missing, found, outputs,
                                  figures=[n for n, data in files.items() if data is not None],
                                  recommender=recommender)
    written = []
    for name, data in files.items():
        if data is None:  # nothing to draw: no placeholder image, and none left from before
            (report_dir / name).unlink(missing_ok=True)
            continue
        atomic_write(report_dir / name, data)
        written.append(report_dir / name)
    return written


def cell_record(cell: Cell) -> dict:
    def side(group: Group | None, key: str) -> dict:
        return {f"{key}_mean": group.mean if group else None,
                f"{key}_std": group.std if group else None,
                f"n_{key}": group.n if group else 0,
                f"{key}_seeds": sorted(group.seeds) if group else [],
                f"{key}_scores": [x * 100 for x in group.scores] if group else []}

    return {
        "target": cell.target, "support": cell.support,
        **side(cell.mtl, "mtl"), **side(cell.stilts, "stilts"),
        "diff": cell.diff, "t": _finite(cell.t), "p": cell.p,
        "significant": cell.significant, "better": cell.better,
        "heuristic": cell.heuristic, "heuristic_correct": cell.heuristic_correct,
        "target_size": cell.target_size, "support_size": cell.support_size,
        "mtl_from_symmetric_runs": bool(cell.mtl and cell.mtl.symmetric),
        "refused": cell.refused, "at_baseline": cell.at_baseline, "sequential": cell.sequential,
        **_stats_record(cell.stats),
    }


def _stats_record(stats: CellStats | None) -> dict:
    """The cell's interval, effect size, corrected p values, power and verdict (points)."""
    stats = stats or CellStats(verdict=None)
    return {"diff_ci_t": _pair(stats.diff_ci_t), "diff_ci_boot": _pair(stats.diff_ci_boot),
            "hedges_g": stats.hedges_g, "p_holm": stats.p_holm, "p_bh": stats.p_bh,
            "p_tost": stats.p_tost, "mde": stats.mde, "verdict": stats.verdict,
            "verdict_reason": stats.reason, "aso_eps_min": stats.aso, "aso_better": stats.aso_better}


def _pair(pair: tuple[float, float] | None) -> list[float] | None:
    return list(pair) if pair else None


def summary(analysis: Analysis, tables: list[Table], missing: list[MissingRun],
            found: Discovery, outputs: Path, recommender: dict | None = None) -> dict:
    score = analysis.heuristic
    groups = [*analysis.singles.values(), *analysis.mtl_all, *analysis.others]
    return {
        "generated_by": f"mtlvsift {__version__} scripts/compare.py",
        "model": analysis.model,
        "protocol": analysis.protocol,
        "variant": analysis.variant,
        "seeds": analysis.seeds_in_use,
        "expected_seeds": analysis.expected_seeds,
        "units": "points (dev score x 100), mean over seeds",
        "test": analysis.test,
        "correction": analysis.correction,
        "equivalence_margin": analysis.equivalence_margin,
        "alpha": analysis.alpha,
        "tasks": analysis.tasks,
        "task_info": {t: _task_info(analysis, t) for t in analysis.all_tasks},
        "heuristic": {"rule": HEURISTIC_RULE, "correct": score.correct, "total": score.total,
                      "accuracy": score.accuracy,
                      "paper": {"correct": PAPER_HEURISTIC[0], "total": PAPER_HEURISTIC[1],
                                "accuracy": PAPER_HEURISTIC[0] / PAPER_HEURISTIC[1]}},
        "heuristic_by_correction": {name: score.record() for name, score in
                                    heuristic_by_correction(analysis.cells.values(),
                                                            analysis.alpha).items()},
        "heuristic_by_sign": heuristic_by_sign(analysis.cells.values()).record(),
        "cells": [cell_record(analysis.cells[key]) for key in _cell_order(analysis)],
        "tables": {t.key: {"title": t.title, "caption": t.caption, "columns": t.columns,
                           "rows": [{"label": r.label, "values": r.values,
                                     "notes": r.notes} for r in t.rows]} for t in tables},
        "groups": [_group_record(g) for g in groups],
        "size_experiments": [dict(_group_record(g), ci90=g.ci90(),
                                   ci90_boot=_pair(g.ci90_boot())) for g in analysis.size_groups],
        "missing": [{"method": m.method, "target": m.target, "support": m.support,
                     "seeds": list(m.seeds), "label": m.label,
                     "command": m.command(outputs)} for m in missing],
        "in_progress": [_relative(r.path, found.root) for r in found.in_progress],
        "warnings": found.warnings + analysis.warnings,
        "recommender": recommender,
    }


def _task_info(a: Analysis, task: str) -> dict:
    """Training size, main metric and (when the records hold one) the majority-class baseline."""
    info = {"train_size": a.sizes.get(task), "main_metric": a.main_metrics.get(task)}
    if task in a.baselines:
        info["baseline"] = a.baselines[task]
    return info


def matrix_csv(analysis: Analysis, value) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["target \\ support", *analysis.tasks])
    for target in analysis.tasks:
        row = []
        for support in analysis.tasks:
            cell = analysis.cell(target, support)
            number = value(cell) if cell is not None else None
            row.append("" if number is None else repr(round(number, 6)))
        writer.writerow([target, *row])
    return out.getvalue()


def cells_csv(analysis: Analysis) -> str:
    out = io.StringIO()
    rows = [cell_record(analysis.cells[key]) for key in _cell_order(analysis)]
    columns = [k for k in (rows[0] if rows else cell_record(Cell("", "", None, None, None, None)))
               if not k.endswith("_seeds")]
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv_value(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def _csv_value(value: object) -> object:
    """A list (scores, an interval) as its numbers separated by spaces."""
    return " ".join(repr(round(x, 6)) for x in value) if isinstance(value, list) else value


def table_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", *table.columns])
    for row in table.rows:
        writer.writerow([row.label, *("" if v is None else f"{v:.4f}" for v in row.values)])
    return out.getvalue()


def missing_script(missing: list[MissingRun], outputs: Path) -> str:
    lines = ["#!/bin/sh", "# Runs the report still lacks (written by scripts/compare.py), single "
             "runs first (STILTs and dynamic MTL read them).", "set -e"]
    for run in missing:
        # One comment line, whatever the text holds: a line break would start a command.
        lines += ["# " + " ".join(run.describe().split()), run.command(outputs)]
    return "\n".join(lines) + "\n"


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
             recommender: dict | None = None) -> str:
    """report.md; ``figures``: the figure files written next to it; ``recommender``: the
    evaluation of recommend.py's saved rankings (``recommender_record``)."""
    a = analysis
    correct, total = PAPER_HEURISTIC
    paper = f"the paper: {correct}/{total}, {correct / total:.1%}"
    parts = [f"# MTL vs STILTs: {md_text(report_name(a))}", md_text(overview_line(a, outputs)),
             md_text(corrections_line(a))]
    parts += [md_text(line) for line in (few_seeds_line(a), sequential_line(a)) if line]
    parts.append(md_text(aso_line(a)))
    parts.append(md_text(tasks_line(a)))
    if baselines_line(a):
        parts.append(md_text(baselines_line(a)))
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
                  "\n".join(f"- `{md_text(_relative(r.path, found.root))}`" for r in found.in_progress)]
    warnings = found.warnings + a.warnings
    if warnings:
        parts += ["## Skipped files", "\n".join(f"- {md_text(w)}" for w in warnings)]
    parts.append("Files: `cells.csv` (one row per cell), `matrix_diff.csv`, `matrix_p.csv`, "
                 "`table1.csv`, `table2.csv`, `summary.json`, `missing.sh`.")
    return "\n\n".join(parts) + "\n"


def recommender_record(analysis: Analysis, outputs: Path) -> dict:
    """recommend.py's saved rankings of this model against the STILTs gains measured here: the
    STILTs mean minus the target's single-task mean, in points (``evaluation.evaluate``)."""
    measured: dict[str, dict[str, float]] = {}
    for (target, support), cell in analysis.cells.items():
        single = analysis.singles.get(target)
        if cell.stilts is not None and cell.refused is None and single is not None:
            measured.setdefault(target, {})[support] = cell.stilts.mean - single.mean
    slug = report_slug(analysis.model, analysis.protocol, analysis.variant)
    predicted, warnings = load_rankings(outputs, slug,
                                        set(analysis.all_tasks))
    return dict(evaluate(predicted, measured), rankings=sorted(predicted), warnings=warnings)


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
                             + (" ~" if cell.at_baseline else ""))
        lines.append(f"| **{display_name(target)}** | " + " | ".join(cells) + " |")
    legend = (f"Bold: significant at p < {a.alpha:g} ({a.test_name}); positive = MTL better, "
              "negative = STILTs better; ✗: the size heuristic predicted the other method; "
              "·: not run yet; ≠: seeds not pooled (see the warnings). A cell with fewer than 3 "
              "seeds of a method, or no variance, has no test.")
    if any(c.at_baseline for c in a.cells.values()):
        legend += (f" ~: both methods at the majority-class baseline (within {BASELINE_MARGIN:g} "
                   "points): nothing learned.")
    return "\n".join(lines) + "\n\n" + legend


def _markdown_cells(a: Analysis) -> str:
    aso = ["ASO ε"] if a.aso else []
    header = ["target", "support", "MTL", "STILTs", "diff", "90% CI (t)", "90% CI (bootstrap)",
              "g", "t", "p", "p Holm", "p BH", "MDE", *aso, "verdict", "better", "heuristic"]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for key in _cell_order(a):
        c = a.cells[key]
        s = c.stats or CellStats()
        mtl = group_text(c.mtl) + (" (sym.)" if c.mtl and c.mtl.symmetric else "")
        values = [display_name(c.target), display_name(c.support), mtl, group_text(c.stilts),
                  fmt(c.diff, sign=True), _interval(s.diff_ci_t), _interval(s.diff_ci_boot),
                  fmt(s.hedges_g, 2), fmt(c.t, 2), fmt_p(c.p), fmt_p(s.p_holm), fmt_p(s.p_bh),
                  fmt(s.mde), *([_aso_text(s)] if a.aso else []),
                  _verdict_text(c.verdict, s.reason), c.better or "–", c.heuristic or "–"]
        rows.append("| " + " | ".join(values) + " |")
    aso_title = ", almost stochastic order (ε_min of the method ahead)" if a.aso else ""
    return _details("Every cell: means ± std over seeds, intervals of the difference, Hedges' g, "
                    "t-test, corrected p, minimum detectable effect (points, 80% power)"
                    f"{aso_title}, verdict", "\n".join(rows))


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


def _cell_order(a: Analysis) -> list[tuple[str, str]]:
    rank = {t: i for i, t in enumerate(a.tasks)}
    return sorted(a.cells, key=lambda k: (rank[k[0]], rank[k[1]]))


def _group_record(g: Group) -> dict:
    return {"method": g.method, "target": g.target, "support": list(g.support),
            "variant": g.variant, "sampling": g.sampling, "target_fraction": g.target_fraction,
            "support_ratio": g.support_ratio, "seeds": sorted(g.seeds), "n": g.n,
            "mean": g.mean, "std": g.std}


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)

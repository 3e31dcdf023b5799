"""The report folder: report.md, figure1.png, figure2.png, CSVs, summary.json and missing.sh.

Every file is written atomically (``run_folder.atomic_write``: a temporary file in the same
folder, then a rename), so a reader never sees a half-written report. Numbers are in points
(x100); nothing depends on the clock, so the same runs give the same files. A figure with nothing
to draw is not written (and one left by an earlier report is removed): report.md says so. This
module writes the folder and the machine-readable files; report.md's text is ``markdown.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from mtlvsift import __version__
from mtlvsift.recommend.evaluation import evaluate, load_rankings
from mtlvsift.report.baseline_runs import runs_at_baseline
from mtlvsift.report.exposure import SIDES
from mtlvsift.report.markdown import markdown
from mtlvsift.report.missing import MissingRun
from mtlvsift.report.stats import PAPER_HEURISTIC, Analysis, Cell, Group
from mtlvsift.report.tables import Table
from mtlvsift.report.text import HEURISTIC_RULE, holdout_fractions, relative_text
from mtlvsift.report.verdicts import CellStats, heuristic_by_correction, heuristic_by_sign
from mtlvsift.run_folder import atomic_write, report_slug
from mtlvsift.run_index import Discovery


def write_report_dir(report_dir: Path, analysis: Analysis, tables: list[Table],
                     missing: list[MissingRun], found: Discovery, outputs: Path,
                     recommender: dict, retrain: list[MissingRun] = ()) -> list[Path]:
    """Write every file of one report (``recommender``: ``recommender_record``'s evaluation of
    the saved rankings; ``retrain``: the commands that fix the cells not pooled); returns the
    paths written."""
    from mtlvsift.report import figures  # matplotlib only when files are written

    files: dict[str, str | bytes | None] = {
        "figure1.png": figures.figure1(analysis),
        "figure2.png": figures.figure2(analysis),
        "matrix_diff.csv": matrix_csv(analysis, lambda c: c.diff),
        "matrix_p.csv": matrix_csv(analysis, lambda c: c.p),
        "cells.csv": cells_csv(analysis),
        "summary.json": json.dumps(summary(analysis, tables, missing, found, outputs, recommender,
                                           retrain), indent=1),
        "missing.sh": missing_script(missing, outputs, retrain),
    }
    files.update({f"{t.key}.csv": table_csv(t) for t in tables})
    files["report.md"] = markdown(analysis, tables, missing, found, outputs,
                                  figures=[n for n, data in files.items() if data is not None],
                                  recommender=recommender, retrain=retrain)
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
        "size_tie": cell.size_tie,
        "target_size": cell.target_size, "support_size": cell.support_size,
        "mtl_from_symmetric_runs": bool(cell.mtl and cell.mtl.symmetric),
        "refused": cell.refused, "at_baseline": cell.at_baseline, "sequential": cell.sequential,
        **{f"{method}_{side}_passes": cell.passes.get(method, {}).get(side)
           for method in ("mtl", "stilts") for side in SIDES},
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
            found: Discovery, outputs: Path, recommender: dict | None = None,
            retrain: list[MissingRun] = ()) -> dict:
    score = analysis.heuristic
    groups = [*analysis.singles.values(), *analysis.mtl_all, *analysis.others]
    return {
        "generated_by": f"mtlvsift {__version__} scripts/compare.py",
        "model": analysis.model,
        "protocol": analysis.protocol,
        "variant": analysis.variant,
        "settings": dict(analysis.settings),
        "selection": {"split": "holdout" if holdout_fractions(analysis) else "dev",
                      "fractions": holdout_fractions(analysis)},
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
                      "accuracy": score.accuracy, "ties": score.ties,
                      "paper": {"correct": PAPER_HEURISTIC[0], "total": PAPER_HEURISTIC[1],
                                "accuracy": PAPER_HEURISTIC[0] / PAPER_HEURISTIC[1]}},
        "heuristic_by_correction": {name: score.record() for name, score in
                                    heuristic_by_correction(analysis.cells.values(),
                                                            analysis.alpha).items()},
        "heuristic_by_sign": heuristic_by_sign(analysis.cells.values()).record(),
        "cells": [cell_record(analysis.cells[key]) for key in analysis.ordered_cells()],
        "tables": {t.key: {"title": t.title, "caption": t.caption, "columns": t.columns,
                           "rows": [{"label": r.label, "values": r.values,
                                     "notes": r.notes} for r in t.rows]} for t in tables},
        "groups": [_group_record(g) for g in groups],
        "at_baseline_runs": [flag.record() for flag in runs_at_baseline(analysis)],
        "size_experiments": [dict(_group_record(g), ci90=g.ci90(),
                                   ci90_boot=_pair(g.ci90_boot())) for g in analysis.size_groups],
        "missing": [_run_record(m, outputs) for m in missing],
        "retrain": [_run_record(m, outputs) for m in retrain],
        "in_progress": [relative_text(r.path, found.root) for r in found.in_progress],
        "warnings": found.warnings + analysis.warnings,
        "recommender": recommender,
    }


def _run_record(run: MissingRun, outputs: Path) -> dict:
    return {"method": run.method, "target": run.target, "support": run.support,
            "seeds": list(run.seeds), "label": run.label, "command": run.command(outputs)}


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
    rows = [cell_record(analysis.cells[key]) for key in analysis.ordered_cells()]
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


def missing_script(missing: list[MissingRun], outputs: Path, retrain: list[MissingRun] = ()) -> str:
    lines = ["#!/bin/sh", "# Runs the report still lacks (written by scripts/compare.py), single "
             "runs first (STILTs and dynamic MTL read them); last, the seeds of the cells not "
             "pooled, retrained with --overwrite.", "set -e"]
    for run in [*missing, *retrain]:
        # One comment line, whatever the text holds: a line break would start a command.
        lines += ["# " + " ".join(run.describe().split()), run.command(outputs)]
    return "\n".join(lines) + "\n"


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


def _group_record(g: Group) -> dict:
    return {"method": g.method, "target": g.target, "support": list(g.support),
            "variant": g.variant, "sampling": g.sampling, "target_fraction": g.target_fraction,
            "support_ratio": g.support_ratio, "seeds": sorted(g.seeds), "n": g.n,
            "mean": g.mean, "std": g.std}


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None

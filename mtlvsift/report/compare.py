"""The compare report: discovery, analysis per model, then the terminal report and the files.

``compare()`` is what ``scripts/compare.py`` runs; ``recommend()`` answers for one new pair.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console

from mtlvsift import run_folder
from mtlvsift.display import safe_markup
from mtlvsift.errors import MtlvsiftError
from mtlvsift.report.files import recommender_record, write_report_dir
from mtlvsift.report.markdown import md_text
from mtlvsift.report.inference import require_aso
from mtlvsift.report.missing import missing_runs, retrain_runs
from mtlvsift.report.stats import Analysis, analyze, size_heuristic, task_sizes
from mtlvsift.report.tables import table1, table2
from mtlvsift.report.terminal import render, render_in_progress
from mtlvsift.report.text import METHOD_NAMES, PAPER_PHRASE, fmt_p, report_name, seeds_phrase
from mtlvsift.report.variants import report_keys
from mtlvsift.report.verdicts import DEFAULT_MARGIN
from mtlvsift.run_folder import atomic_write
from mtlvsift.run_index import discover, require_records
from mtlvsift.tasks import GLUE_TASKS, normalize_task_name


def compare(outputs: Path, report_dir: Path | None = None, alpha: float = 0.1,
            welch: bool = False, model: str | None = None, console: Console | None = None,
            err_console: Console | None = None, correction: str = "none",
            margin: float = DEFAULT_MARGIN, aso: bool = False) -> list[Analysis]:
    """Report every model (or only ``model``), protocol and data variant (``n-300``: see
    variants.py) under ``outputs``, each separately; write the report folder (one subfolder per
    report when there are several)."""
    console = console or _console()
    err_console = err_console or Console(stderr=True)
    if aso:
        require_aso()  # before any work
    found = discover(outputs)
    for warning in found.warnings:
        err_console.print(f"[yellow]Warning:[/] {safe_markup(warning)}", highlight=False)
    require_records(found)
    models = found.models
    if model is not None:
        if model not in models:
            raise MtlvsiftError(f"No runs of model '{model}' under {outputs}. Models found: "
                                f"{', '.join(models)}.")
        models = [model]
    report_dir = Path(report_dir) if report_dir else Path(outputs) / "report"
    keys = report_keys(r for r in found.records if r.model in models)
    several = len(keys) > 1
    if several:
        console.print(f"Runs of {len(keys)} models, protocols, data variants or settings (such as "
                      f"--epochs): each is reported separately (choose a model with --model). "
                      f"Outputs: {safe_markup(outputs)}", highlight=False)
    analyses = []
    for key in keys:
        computing = err_console.status("Almost stochastic order (deepsig): a few seconds a cell")
        with computing if aso else nullcontext():
            analysis = analyze(found.records, key.model, alpha, welch, key.protocol, key.variant,
                               correction, margin, aso, key.settings)
        recommender = recommender_record(analysis, outputs)
        for warning in analysis.warnings + recommender["warnings"]:
            err_console.print(f"[yellow]Warning:[/] {safe_markup(warning)}", highlight=False)
        tables = [table1(analysis), table2(analysis)]
        missing, retrain = missing_runs(analysis), retrain_runs(analysis)
        render(console, analysis, tables, missing, outputs, retrain)
        folder = report_dir / report_slug(analysis) if several else report_dir
        written: list[Path] = []
        _write(folder, lambda: written.extend(
            write_report_dir(folder, analysis, tables, missing, found, outputs, recommender,
                             retrain)))
        figures = ", ".join(p.name for p in written if p.suffix == ".png")
        console.print(f"Report written to {safe_markup(folder)}/ (report.md, "
                      f"{figures + ', ' if figures else ''}CSVs, summary.json, missing.sh)",
                      highlight=False)
        analyses.append(analysis)
    if several:
        _write(report_dir, lambda: _write_index(report_dir, analyses))
    render_in_progress(console, found)
    return analyses


def _write(folder: Path, write: Callable[[], object]) -> None:
    """Run ``write``; a report folder that cannot be written (a file in its place, a full or
    read-only disk) is one clear error."""
    try:
        write()
    except OSError as exc:
        raise MtlvsiftError(f"Could not write the report in {folder}: {exc}. Choose another "
                            f"--report-dir, or free space there.") from exc


def _console() -> Console:
    """The terminal's width, or 120 columns when piped (so that the tables do not wrap)."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def report_slug(analysis: Analysis) -> str:
    """The report folder of one model, protocol, data variant and settings, named as
    ``run_folder.report_slug`` names it, the settings last: 'minilm__n-200_epochs-1'."""
    variant = "_".join(filter(None, (analysis.variant, analysis.key.settings_slug())))
    return run_folder.report_slug(analysis.model, analysis.protocol, variant)


def recommend(outputs: Path, target: str | None = None, support: str | None = None,
              target_size: int | None = None, support_size: int | None = None,
              model: str | None = None, alpha: float = 0.1, welch: bool = False,
              console: Console | None = None, correction: str = "none",
              margin: float = DEFAULT_MARGIN) -> dict:
    """The size heuristic's pick for a new pair and how often it held (runs at hand or paper),
    with the pair's own measured result where it was run.

    Sizes come from the options, else from the training sizes the runs recorded (the first
    report, default data first, whose runs trained the task), else from the registry (GLUE).
    """
    found = discover(outputs)
    analyses = [analyze(found.records, key.model, alpha, welch, key.protocol, key.variant,
                        correction, margin, settings=key.settings)
                for key in report_keys(r for r in found.records if model in (None, r.model))]
    names = [normalize_task_name(n) for n in (target, support) if n]
    # The report whose runs trained both tasks (else one): its recorded sizes are the pair's.
    sized = sorted(analyses, key=lambda a: -len(set(names) & set(task_sizes(a.records, False))))
    recorded = {a.key: task_sizes(a.records, glue=False) for a in analyses}
    source: list[str] = []

    def size_of(name: str | None, size: int | None, option: str) -> int:
        if size is not None:
            return size
        if name is None:
            raise MtlvsiftError(f"Give --{option}-size N or --{option} TASK.")
        key = normalize_task_name(name)
        for a in sized:
            if recorded[a.key].get(key):
                source.append(report_name(a))
                return recorded[a.key][key]
        if key in GLUE_TASKS:
            source.append("GLUE's training sets")
            return GLUE_TASKS[key].train_size
        raise MtlvsiftError(f"Task '{name}' is neither a GLUE task nor trained in any run under "
                            f"{outputs}; check the name, or give its size: --{option}-size N.")

    target_size = size_of(target, target_size, "target")
    support_size = size_of(support, support_size, "support")
    pair = tuple(names) if target and support else None
    console = console or _console()
    pick = size_heuristic(target_size, support_size)
    relation = "smaller than" if target_size < support_size else "not smaller than"
    origin = f"; sizes as trained in the runs of {' and '.join(dict.fromkeys(source))}" if any(
        s != "GLUE's training sets" for s in source) else ""
    console.print(f"Recommendation: [bold]{METHOD_NAMES[pick]}[/] "
                  f"(the target's {target_size:,} training examples are {relation} the "
                  f"supporting task's {support_size:,}{safe_markup(origin)}).", highlight=False)
    result = {"pick": pick, "target_size": target_size, "support_size": support_size,
              "sizes_from": list(dict.fromkeys(source)), "evidence": []}
    for a in analyses:
        name, score = safe_markup(report_name(a)), a.heuristic
        entry: dict = {"model": a.model, "protocol": a.protocol, "variant": a.variant}
        if score.total:
            alike = [c for c in a.cells.values() if c.significant and c.heuristic == pick]
            held = sum(c.better == pick for c in alike)
            console.print(f"In the runs at hand ({name}, {a.test_name}, alpha {alpha:g}): the "
                          f"heuristic {score.phrase()}; where it picks {METHOD_NAMES[pick]}, it "
                          f"held in {held}/{len(alike)}.", highlight=False)
            entry.update(correct=score.correct, total=score.total, same_pick_correct=held,
                         same_pick_total=len(alike))
        cell = a.cell(*pair) if pair else None
        if cell is not None and cell.complete:
            verdict = (f"{METHOD_NAMES[cell.better]} better" if cell.significant
                       else f"open ({cell.stats.reason})" if cell.stats.reason
                       else f"{cell.verdict}, no significant difference")
            console.print(f"  This pair was run ({name}, {seeds_phrase(a)}): MTL "
                          f"{cell.mtl.mean:.1f} vs STILTs {cell.stilts.mean:.1f} points "
                          f"({cell.diff:+.1f}), p = {fmt_p(cell.p)}: {verdict}.", highlight=False)
            entry["pair"] = {"mtl_mean": cell.mtl.mean, "stilts_mean": cell.stilts.mean,
                             "diff": cell.diff, "p": cell.p, "better": cell.better,
                             "verdict": cell.verdict, "verdict_reason": cell.stats.reason}
        if len(entry) > 3:
            result["evidence"].append(entry)
    if not any("total" in e for e in result["evidence"]):
        lead = "No significant cells yet in" if found.records else "No run records in"
        console.print(f"{lead} {safe_markup(outputs)}; in the paper (Weller et al., 2022, "
                      f"GLUE) the heuristic predicts {PAPER_PHRASE.replace(',', ' significant cells,')}.",
                      highlight=False)
    return result


def _write_index(report_dir: Path, analyses: list[Analysis]) -> None:
    lines = ["# MTL vs STILTs reports", "", "One report per model, protocol, data variant and "
             "settings (options such as --epochs, when runs differ in them):", ""]
    index = {}
    for a in analyses:
        slug, name = report_slug(a), report_name(a)
        lines.append(f"- [{md_text(name)}]({slug}/report.md): {seeds_phrase(a)}; size heuristic "
                     f"{a.heuristic.phrase()}")
        index[name] = {"report_dir": slug, "model": a.model, "protocol": a.protocol,
                       "variant": a.variant, "settings": dict(a.settings),
                       "seeds": a.seeds_in_use, "heuristic": {
                           "correct": a.heuristic.correct, "total": a.heuristic.total,
                           "accuracy": a.heuristic.accuracy}}
    atomic_write(report_dir / "report.md", "\n".join(lines) + "\n")
    atomic_write(report_dir / "summary.json", json.dumps({"models": index}, indent=1))

"""The compare report: discovery, analysis per model, then the terminal report and the files.

``compare()`` is what ``scripts/compare.py`` runs; ``recommend()`` answers for one new pair.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from mtlvsift.commands import DEFAULT_PROTOCOL
from mtlvsift.errors import MtlvsiftError
from mtlvsift.report.files import write_report_dir
from mtlvsift.report.missing import missing_runs
from mtlvsift.report.stats import Analysis, analyze, size_heuristic, task_sizes
from mtlvsift.report.tables import table1, table2
from mtlvsift.report.terminal import render, render_in_progress
from mtlvsift.report.text import METHOD_NAMES, PAPER_PHRASE, fmt
from mtlvsift.run_folder import atomic_write
from mtlvsift.run_index import discover, require_records
from mtlvsift.tasks import normalize_task_name


def compare(outputs: Path, report_dir: Path | None = None, alpha: float = 0.1,
            welch: bool = False, model: str | None = None, console: Console | None = None,
            err_console: Console | None = None) -> list[Analysis]:
    """Report every model (or only ``model``) and protocol under ``outputs``, each separately;
    write the report folder (one subfolder per model and protocol when there are several)."""
    console = console or _console()
    err_console = err_console or Console(stderr=True)
    found = discover(outputs)
    for warning in found.warnings:
        err_console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False)
    require_records(found)
    models = found.models
    if model is not None:
        if model not in models:
            raise MtlvsiftError(f"No runs of model '{model}' under {outputs}. Models found: "
                                f"{', '.join(models)}.")
        models = [model]
    report_dir = Path(report_dir) if report_dir else Path(outputs) / "report"
    runs = sorted({(r.model, r.protocol) for r in found.records if r.model in models},
                  key=lambda mp: (mp[0], mp[1] != DEFAULT_PROTOCOL, mp[1]))
    several = len(runs) > 1
    if several:
        console.print(f"Runs of {len(runs)} models or protocols: each is reported separately "
                      f"(choose a model with --model). Outputs: {outputs}", highlight=False)
    analyses = []
    for name, protocol in runs:
        analysis = analyze(found.records, name, alpha, welch, protocol)
        for warning in analysis.warnings:
            err_console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False)
        tables = [table1(analysis), table2(analysis)]
        missing = missing_runs(analysis)
        render(console, analysis, tables, missing, found, outputs)
        folder = report_dir / report_slug(analysis) if several else report_dir
        _write(folder, lambda: write_report_dir(folder, analysis, tables, missing, found, outputs))
        console.print(f"Report written to {folder}/ (report.md, figure1.png, figure2.png, "
                      "CSVs, summary.json, missing.sh)", highlight=False)
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


def model_slug(model: str) -> str:
    """A folder name for a model id or path: 'org/model' -> 'org-model'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"


def report_slug(analysis: Analysis) -> str:
    """The report folder of one model and protocol: 'org-model', 'org-model__protocol-original'."""
    slug = model_slug(analysis.model)
    return slug if analysis.protocol == DEFAULT_PROTOCOL else f"{slug}__protocol-{analysis.protocol}"


def recommend(outputs: Path, target: str | None = None, support: str | None = None,
              target_size: int | None = None, support_size: int | None = None,
              model: str | None = None, alpha: float = 0.1, welch: bool = False,
              console: Console | None = None) -> dict:
    """The size heuristic's pick for a new pair and how often it held (runs at hand or paper).

    Sizes come from the options, else from the records' train_sizes, else from the registry.
    """
    found = discover(outputs)
    records = [r for r in found.records if model is None or r.model == model]
    known = task_sizes(records)

    def size_of(name: str | None, size: int | None, option: str) -> int:
        if size is not None:
            return size
        if name is None:
            raise MtlvsiftError(f"Give --{option}-size N or --{option} TASK.")
        key = normalize_task_name(name)
        if known.get(key):  # the records' sizes, GLUE's for GLUE tasks without records
            return known[key]
        raise MtlvsiftError(f"Task '{name}' is neither a GLUE task nor trained in any run under "
                            f"{outputs}; check the name, or give its size: --{option}-size N.")

    target_size = size_of(target, target_size, "target")
    support_size = size_of(support, support_size, "support")
    pair = None
    if target and support:
        pair = (normalize_task_name(target), normalize_task_name(support))
    console = console or _console()
    pick = size_heuristic(target_size, support_size)
    relation = "smaller than" if target_size < support_size else "not smaller than"
    console.print(f"Recommendation: [bold]{METHOD_NAMES[pick]}[/] "
                  f"(the target's {target_size:,} training examples are {relation} the "
                  f"supporting task's {support_size:,}).", highlight=False)
    models = [model] if model else found.models
    result = {"pick": pick, "target_size": target_size, "support_size": support_size,
              "evidence": []}
    for name in models:
        a = analyze(found.records, name, alpha, welch)
        score, cells = a.heuristic, [c for c in a.cells.values() if c.significant]
        alike = [c for c in cells if c.heuristic == pick]
        held = sum(c.better == pick for c in alike)
        if not score.total:
            continue
        console.print(f"In the runs at hand ({escape(name)}, {a.test_name}, alpha {alpha:g}): the "
                      f"heuristic {score.phrase()}; where it picks {METHOD_NAMES[pick]}, it "
                      f"held in {held}/{len(alike)}.", highlight=False)
        entry = {"model": name, "correct": score.correct, "total": score.total,
                 "same_pick_correct": held, "same_pick_total": len(alike)}
        cell = a.cell(*pair) if pair else None
        if cell is not None and cell.complete:
            verdict = (f"{METHOD_NAMES[cell.better]} better" if cell.significant
                       else "no significant difference")
            console.print(f"  This pair was run: MTL - STILTs = {cell.diff:+.1f} points, "
                          f"p = {fmt(cell.p, 3)}: {verdict}.", highlight=False)
            entry["pair"] = {"diff": cell.diff, "p": cell.p, "better": cell.better}
        result["evidence"].append(entry)
    if not result["evidence"]:
        lead = "No significant cells yet in" if records else "No run records in"
        console.print(f"{lead} {outputs}; in the paper (Weller et al., 2022, GLUE) the heuristic "
                      f"predicts {PAPER_PHRASE.replace(',', ' significant cells,')}.",
                      highlight=False)
    return result


def _write_index(report_dir: Path, analyses: list[Analysis]) -> None:
    lines = ["# MTL vs STILTs reports", "", "One report per model and protocol:", ""]
    index = {}
    for a in analyses:
        slug, name = report_slug(a), a.model
        if a.protocol != DEFAULT_PROTOCOL:
            name += f" (protocol {a.protocol})"
        lines.append(f"- [{name}]({slug}/report.md): size heuristic {a.heuristic.phrase()}")
        index[name] = {"report_dir": slug, "model": a.model, "protocol": a.protocol, "heuristic": {
            "correct": a.heuristic.correct, "total": a.heuristic.total,
            "accuracy": a.heuristic.accuracy}}
    atomic_write(report_dir / "report.md", "\n".join(lines) + "\n")
    atomic_write(report_dir / "summary.json", json.dumps({"models": index}, indent=1))

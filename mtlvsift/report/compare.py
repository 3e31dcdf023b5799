"""The compare report: discovery, analysis per model, then the terminal report and the files.

``compare()`` is what ``scripts/compare.py`` runs; ``recommend()`` answers for one new pair.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
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
from mtlvsift.run_record import RunRecord
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
                               correction, margin, aso, key.settings, key.mtl)
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
    variant = analysis.key.variant_slug()
    return run_folder.report_slug(analysis.model, analysis.protocol, variant)


def recommend(outputs: Path, target: str | None = None, support: str | None = None,
              target_size: int | None = None, support_size: int | None = None,
              model: str | None = None, alpha: float = 0.1, welch: bool = False,
              console: Console | None = None, correction: str = "none",
              margin: float = DEFAULT_MARGIN) -> dict:
    """The size heuristic's pick for a new pair and how often it held (runs at hand or paper),
    with the pair's own measured result where it was run. The two sizes are alike (``sizes``
    in the result): ``given`` by the options, ``as_trained`` in one report whose runs trained
    both tasks (a capped experiment's), else ``full``: both tasks' whole training sets."""
    found = discover(outputs)
    analyses = [analyze(found.records, key.model, alpha, welch, key.protocol, key.variant,
                        correction, margin, settings=key.settings, mtl=key.mtl)
                for key in report_keys(r for r in found.records if model in (None, r.model))]
    sizes = rule_sizes(analyses, found.records, target, support, target_size, support_size,
                       outputs)
    pick = size_heuristic(sizes.target, sizes.support)
    console = console or _console()
    compared = (f"the target's {sizes.target:,} training examples "
                f"{_RELATIONS[pick]} the supporting task's {sizes.support:,}; {sizes.origin}")
    console.print(f"Recommendation: [bold]{METHOD_NAMES[pick]}[/] ({safe_markup(compared)})."
                  if pick else f"Recommendation: [bold]none[/]: the size rule does not choose "
                  f"({safe_markup(compared)}).", highlight=False)
    result = {"pick": pick, "target_size": sizes.target, "support_size": sizes.support,
              "sizes": sizes.kind, "sizes_from": sizes.origin, "evidence": []}
    if sizes.full is not None:
        full_pick = size_heuristic(*sizes.full)
        result["full_sizes"] = {"target_size": sizes.full[0], "support_size": sizes.full[1],
                                "pick": full_pick}
        if sizes.full != (sizes.target, sizes.support):
            console.print(f"With both full training sets ({sizes.full[0]:,} vs "
                          f"{sizes.full[1]:,}): {METHOD_NAMES.get(full_pick, 'a tie')}.",
                          highlight=False)
    pair = tuple(normalize_task_name(n) for n in (target, support)) if target and support else None
    for a in analyses:
        name, score = safe_markup(report_name(a)), a.heuristic
        entry: dict = {"model": a.model, "protocol": a.protocol, "variant": a.variant}
        if score.total:
            held = ""
            if pick:
                alike = [c for c in a.cells.values() if c.significant and c.heuristic == pick]
                entry.update(same_pick_correct=sum(c.better == pick for c in alike),
                             same_pick_total=len(alike))
                held = (f"; where it picks {METHOD_NAMES[pick]}, it held in "
                        f"{entry['same_pick_correct']}/{len(alike)}")
            console.print(f"In the runs at hand ({name}, {a.test_name}, alpha {alpha:g}): the "
                          f"heuristic {score.phrase()}{held}.", highlight=False)
            entry.update(correct=score.correct, total=score.total)
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


_RELATIONS = {"mtl": "are smaller than", "stilts": "are larger than", None: "equal"}


@dataclass(frozen=True)
class RuleSizes:
    """The two training sizes the size rule compares, and which sizes they are."""

    target: int
    support: int
    kind: str  # given, as_trained or full
    origin: str  # the same in words, for the recommendation's line
    full: tuple[int, int] | None = None  # both full training sets, beside as_trained sizes


def rule_sizes(analyses: list[Analysis], records: list[RunRecord], target: str | None,
               support: str | None, target_size: int | None, support_size: int | None,
               outputs: Path) -> RuleSizes:
    """Like with like: a capped run's size is never compared with a whole training set. Sizes
    given as options are used as they are; two named tasks trained together in one report
    (default data first) are compared as trained there; otherwise both full training sets."""
    if target_size is not None and support_size is not None:
        return RuleSizes(target_size, support_size, "given", "both as given")
    for option, name, size in (("target", target, target_size),
                               ("support", support, support_size)):
        if name is None and size is None:
            raise MtlvsiftError(f"Give --{option}-size N or --{option} TASK.")
    full = (target_size or full_size(target, records, outputs, "target"),
            support_size or full_size(support, records, outputs, "support"))
    if target_size is not None or support_size is not None:
        given = "target's" if target_size is not None else "supporting task's"
        return RuleSizes(*full, "full", f"the {given} as given, the other's full training set")
    names = normalize_task_name(target), normalize_task_name(support)
    for a in analyses:
        trained = task_sizes(a.records, glue=False)
        if trained.get(names[0]) and trained.get(names[1]):
            return RuleSizes(trained[names[0]], trained[names[1]], "as_trained",
                             f"both as trained in the runs of {report_name(a)}", full)
    return RuleSizes(*full, "full", "both full training sets")


def full_size(name: str, records: list[RunRecord], outputs: Path, option: str) -> int:
    """A task's whole training set: as the runs found it (before any cap), else GLUE's."""
    task = normalize_task_name(name)
    found = Counter(r.available_train_sizes[task] for r in records
                    if task in r.available_train_sizes)
    if found:
        return found.most_common(1)[0][0]
    if task in GLUE_TASKS:
        return GLUE_TASKS[task].train_size
    raise MtlvsiftError(f"Task '{name}' is neither a GLUE task nor trained in any run under "
                        f"{outputs}; check the name, or give its size: --{option}-size N.")


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
                           "accuracy": a.heuristic.accuracy, "ties": a.heuristic.ties}}
    atomic_write(report_dir / "report.md", "\n".join(lines) + "\n")
    atomic_write(report_dir / "summary.json", json.dumps({"models": index}, indent=1))

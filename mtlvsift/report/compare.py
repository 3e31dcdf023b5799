"""The compare report: discovery, analysis per model, the rich terminal report and the files.

``compare()`` is what ``scripts/compare.py`` runs; ``recommend()`` answers for one new pair.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable
from rich.text import Text

from mtlvsift.errors import MtlvsiftError
from mtlvsift.report.missing import MissingRun, missing_runs
from mtlvsift.run_record import Discovery, discover, require_records
from mtlvsift.report.files import (HEURISTIC_RULE, atomic_write, fmt, group_text,
                                   write_report_dir)
from mtlvsift.report.stats import (PAPER_HEURISTIC, Analysis, analyze, display, size_heuristic,
                            task_sizes)
from mtlvsift.report.tables import Table, table1, table2
from mtlvsift.tasks import get_task, normalize_task_name

MTL_STYLE = "black on light_sky_blue1"
STILTS_STYLE = "black on navajo_white1"
MISS_STYLE = "bold red3"
SHOWN_COMMANDS = 12
METHOD_NAMES = {"mtl": "pairwise MTL", "stilts": "STILTs"}
PAPER_PHRASE = "{}/{}, {:.1%}".format(*PAPER_HEURISTIC, PAPER_HEURISTIC[0] / PAPER_HEURISTIC[1])


def compare(outputs: Path, report_dir: Path | None = None, alpha: float = 0.1,
            welch: bool = False, model: str | None = None, console: Console | None = None,
            err_console: Console | None = None) -> list[Analysis]:
    """Report every model under ``outputs`` (or only ``model``); write the report folder."""
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
    several = len(models) > 1
    if several:
        console.print(f"Runs of {len(models)} models under {outputs}: each is reported "
                      "separately (choose one with --model).", highlight=False)
    analyses = []
    for name in models:
        analysis = analyze(found.records, name, alpha, welch)
        for warning in analysis.warnings:
            err_console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False)
        tables = [table1(analysis), table2(analysis)]
        missing = missing_runs(analysis)
        render(console, analysis, tables, missing, found, outputs)
        folder = report_dir / model_slug(name) if several else report_dir
        write_report_dir(folder, analysis, tables, missing, found, outputs)
        console.print(f"Report written to {folder}/ (report.md, figure1.png, figure2.png, "
                      "CSVs, summary.json, missing.sh)", highlight=False)
        analyses.append(analysis)
    if several:
        _write_index(report_dir, analyses)
    _render_in_progress(console, found)
    return analyses


def _console() -> Console:
    """The terminal's width, or 120 columns when piped (so that the tables do not wrap)."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def model_slug(model: str) -> str:
    """A folder name for a model id or path: 'org/model' -> 'org-model'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.") or "model"


def overview_line(a: Analysis, found: Discovery, outputs: Path) -> str:
    runs = sum(r.model == a.model for r in found.records)
    sizes = sorted({g.n for c in a.cells.values() for g in (c.mtl, c.stilts) if g})
    seeds = (f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}") if sizes else "no"
    plural = "" if sizes == [1] else "s"
    return (f"{runs} run record{'' if runs == 1 else 's'} of {a.model} under `{outputs}` · "
            f"{a.test_name}, alpha = {a.alpha:g} · {seeds} seed{plural} per pairwise group")


def render(console: Console, a: Analysis, tables: list[Table], missing: list[MissingRun],
           found: Discovery, outputs: Path) -> None:
    console.rule(f"[bold]MTL vs STILTs · {escape(a.model)}")
    console.print(escape(overview_line(a, found, outputs).replace("`", "")), highlight=False)
    if any(c.complete for c in a.cells.values()):
        console.print(_matrix(a))
        legend = Text("Legend: ")
        legend.append(" MTL better ", MTL_STYLE).append("  ")
        legend.append(" STILTs better ", STILTS_STYLE).append("  ")
        legend.append("plain: no significant difference  ")
        legend.append("red, !", MISS_STYLE).append(": size heuristic wrong  ")
        legend.append(f"*: p < {a.alpha:g}  ·: not run yet  (one seed: no test)")
        console.print(legend)
    else:
        console.print("No cell has both an MTL and a STILTs run yet.")
    line = Text("Size heuristic", style="bold")
    line.append(f" ({HEURISTIC_RULE}): ", style="")
    line.append(a.heuristic.phrase(), style="bold")
    line.append(f" (paper: {PAPER_PHRASE})")
    console.print(line)
    misses = [c for c in a.cells.values() if c.heuristic_correct is False]
    if misses:
        console.print("  wrong in: " + ", ".join(
            f"{display(c.target)} <- {display(c.support)} ({c.diff:+.1f})" for c in misses),
            highlight=False)
    for table in tables:
        if table.rows:
            console.print(_rich_table(table))
    if a.size_groups:
        console.print(f"Size experiments: {len(a.size_groups)} groups (Figure 2).")
    if a.others:
        other = RichTable(title="Other runs (variants, several supports)", box=box.SIMPLE,
                          title_justify="left")
        other.add_column("run")
        other.add_column("mean ± std (n)", justify="right")
        for g in a.others:
            other.add_row(escape(g.describe()), group_text(g))
        console.print(other)
    _render_missing(console, a, missing, outputs)


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
        return known.get(key) or get_task(name).train_size

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
        console.print(f"In the runs at hand ({name}, {a.test_name}, alpha {alpha:g}): the "
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


def _matrix(a: Analysis) -> RichTable:
    grid = RichTable(title="Figure 1: MTL - STILTs (points); rows: target, columns: support",
                     box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    grid.add_column("target", style="bold")
    for support in a.tasks:
        grid.add_column(display(support), justify="right")
    for target in a.tasks:
        row: list[Text | str] = [display(target)]
        for support in a.tasks:
            cell = a.cell(target, support)
            if target == support:
                row.append(Text("—", style="dim"))
            elif cell is None or not cell.complete:
                row.append(Text("·", style="dim"))
            else:
                miss = cell.heuristic_correct is False
                text = f"{cell.diff:+.1f}" + ("*" if cell.significant else " ")
                text += "!" if miss else ""
                style = {"mtl": MTL_STYLE, "stilts": STILTS_STYLE}.get(cell.better, "")
                row.append(Text(text, style=f"{style} {MISS_STYLE}" if miss else style))
        grid.add_row(*row)
    return grid


def _rich_table(table: Table) -> RichTable:
    caption = f"{table.caption} {table.notes_line()}".strip()
    out = RichTable(title=table.title, caption=escape(caption), box=box.SIMPLE_HEAD,
                    title_justify="left", caption_justify="left")
    out.add_column("", no_wrap=True)
    for column in table.columns:
        out.add_column(column, justify="right")
    best = table.best()
    for i, row in enumerate(table.rows):
        cells = []
        for j, value in enumerate(row.values):
            text = fmt(value)
            if table.mark == "row" and j < len(row.notes) and row.notes[j]:
                text += f" ({row.notes[j]})"
            cells.append(Text(text, style="bold green" if (i, j) in best else ""))
        out.add_row(row.label, *cells)
    return out


def _render_missing(console: Console, a: Analysis, missing: list[MissingRun],
                    outputs: Path) -> None:
    if not missing:
        console.print("Missing runs: none.")
        return
    console.print(f"[bold]Missing runs[/]: {len(missing)} configurations lack seeds; "
                  "commands that would fill them:")
    for run in missing[:SHOWN_COMMANDS]:
        console.print(f"  [dim]# {escape(run.describe())}[/]", highlight=False)
        console.print("  " + escape(run.command(a.model, outputs)), highlight=False,
                      soft_wrap=True)
    if len(missing) > SHOWN_COMMANDS:
        console.print(f"  ... and {len(missing) - SHOWN_COMMANDS} more in missing.sh "
                      "of the report folder.")


def _render_in_progress(console: Console, found: Discovery) -> None:
    if not found.in_progress:
        return
    console.print(f"[bold]Runs in progress[/] (config.json, no result.json yet): "
                  f"{len(found.in_progress)}")
    for run in found.in_progress:
        console.print(f"  {escape(str(run.path))}  (last written {run.age()})", highlight=False)


def _write_index(report_dir: Path, analyses: list[Analysis]) -> None:
    lines = ["# MTL vs STILTs reports", "", "One report per model:", ""]
    index = {}
    for a in analyses:
        slug = model_slug(a.model)
        lines.append(f"- [{a.model}]({slug}/report.md): size heuristic {a.heuristic.phrase()}")
        index[a.model] = {"report_dir": slug, "heuristic": {
            "correct": a.heuristic.correct, "total": a.heuristic.total,
            "accuracy": a.heuristic.accuracy}}
    atomic_write(report_dir / "report.md", "\n".join(lines) + "\n")
    atomic_write(report_dir / "summary.json", json.dumps({"models": index}, indent=1))

"""The compare report in the terminal (rich): the matrix, the heuristic, tables, missing runs."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from mtlvsift.display import safe_markup
from mtlvsift.report.missing import MissingRun
from mtlvsift.report.stats import Analysis
from mtlvsift.report.tables import Table
from mtlvsift.report.text import HEURISTIC_RULE, PAPER_PHRASE, TIE_LEGEND, aso_line, \
    at_baseline_line, baselines_line, cell_name, corrections_line, few_seeds_line, fmt, group_text, \
    lacking_phrase, not_pooled_line, overview_line, relative_text, selection_line, sequential_line, \
    tasks_line
from mtlvsift.run_index import Discovery
from mtlvsift.tasks import display_name

MTL_STYLE = "black on light_sky_blue1"
STILTS_STYLE = "black on navajo_white1"
MISS_STYLE = "bold red3"
SHOWN_COMMANDS = 12


def render(console: Console, a: Analysis, tables: list[Table], missing: list[MissingRun],
           outputs: Path, retrain: list[MissingRun] = ()) -> None:
    """The report of one analysis; ``retrain``: the commands that fix the cells not pooled."""
    label = " · ".join(filter(None, [a.model, *a.key.label().split(", ")]))
    console.rule(f"[bold]MTL vs STILTs · {safe_markup(label)}")
    console.print(safe_markup(overview_line(a, outputs).replace("`", "")), highlight=False)
    console.print(safe_markup(corrections_line(a)), highlight=False)
    console.print(safe_markup(selection_line(a)), highlight=False)
    for line in filter(None, (few_seeds_line(a), sequential_line(a).replace("`", ""))):
        console.print(f"[yellow]{safe_markup(line)}[/]", highlight=False)
    console.print(safe_markup(aso_line(a)), highlight=False)
    console.print(safe_markup(tasks_line(a)), highlight=False)
    if baselines_line(a):
        console.print(safe_markup(baselines_line(a)), highlight=False)
    if at_baseline_line(a):
        console.print(f"[yellow]{safe_markup(at_baseline_line(a))}[/]", highlight=False)
    if any(c.complete or c.refused for c in a.cells.values()):
        console.print(_matrix(a))
        legend = Text("Legend: ")
        legend.append(" MTL better ", MTL_STYLE).append("  ")
        legend.append(" STILTs better ", STILTS_STYLE).append("  ")
        legend.append("plain: no significant difference  ")
        legend.append("red, !", MISS_STYLE).append(": size heuristic wrong  ")
        legend.append(f"*: p < {a.alpha:g}  ·: not run yet  ≠: seeds not pooled  (under 3 seeds: no test)")
        console.print(legend)
        if any(c.at_baseline for c in a.cells.values()):
            console.print("~: both methods at the majority-class baseline: nothing learned",
                          highlight=False)
        if any(c.size_tie for c in a.cells.values() if c.complete):
            console.print(f"=: {TIE_LEGEND}", highlight=False)
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
            f"{display_name(c.target)} <- {display_name(c.support)} ({c.diff:+.1f})" for c in misses),
            highlight=False)
    _render_not_pooled(console, a, retrain, outputs)
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
            other.add_row(safe_markup(g.describe()), group_text(g))
        console.print(other)
    _render_missing(console, a, missing, outputs)


def _matrix(a: Analysis) -> RichTable:
    grid = RichTable(title="Figure 1: MTL - STILTs (points); rows: target, columns: support",
                     box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    grid.add_column("target", style="bold")
    for support in a.tasks:
        grid.add_column(display_name(support), justify="right")
    for target in a.tasks:
        row: list[Text | str] = [display_name(target)]
        for support in a.tasks:
            cell = a.cell(target, support)
            if target == support:
                row.append(Text("—", style="dim"))
            elif cell is not None and cell.refused:
                row.append(Text("≠", style=MISS_STYLE))
            elif cell is None or not cell.complete:
                row.append(Text("·", style="dim"))
            else:
                miss = cell.heuristic_correct is False
                text = f"{cell.diff:+.1f}" + ("*" if cell.significant else " ")
                text += ("!" if miss else "") + ("~" if cell.at_baseline else "")
                text += "=" if cell.size_tie else ""
                style = {"mtl": MTL_STYLE, "stilts": STILTS_STYLE}.get(cell.better, "")
                row.append(Text(text, style=f"{style} {MISS_STYLE}" if miss else style))
        grid.add_row(*row)
    return grid


def _rich_table(table: Table) -> RichTable:
    caption = f"{table.caption} {table.notes_line()}".strip()
    out = RichTable(title=table.title, caption=safe_markup(caption), box=box.SIMPLE_HEAD,
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


def _render_not_pooled(console: Console, a: Analysis, retrain: list[MissingRun],
                       outputs: Path) -> None:
    if not not_pooled_line(a):
        return
    console.print(f"[bold]{safe_markup(not_pooled_line(a).replace('`', ''))}[/]", highlight=False)
    for key in a.ordered_cells():
        for reason in a.cells[key].refusals:
            console.print(f"  {safe_markup(cell_name(*key))}: {safe_markup(reason)}",
                          highlight=False)
    _render_commands(console, retrain, outputs)


def _render_commands(console: Console, runs: list[MissingRun], outputs: Path) -> None:
    for run in runs[:SHOWN_COMMANDS]:
        console.print(f"  [dim]# {safe_markup(run.describe())}[/]", highlight=False)
        console.print("  " + safe_markup(run.command(outputs)), highlight=False,
                      soft_wrap=True)


def _render_missing(console: Console, a: Analysis, missing: list[MissingRun],
                    outputs: Path) -> None:
    if not missing:
        console.print("Missing runs: none.")
        return
    console.print(f"[bold]Missing runs[/]: {lacking_phrase(len(missing))}; "
                  "commands that would fill them:")
    _render_commands(console, missing, outputs)
    if len(missing) > SHOWN_COMMANDS:
        console.print(f"  ... and {len(missing) - SHOWN_COMMANDS} more in missing.sh "
                      "of the report folder.")


def render_in_progress(console: Console, found: Discovery) -> None:
    if not found.in_progress:
        return
    console.print(f"[bold]Runs in progress[/] (config.json, no result.json yet): "
                  f"{len(found.in_progress)}")
    for run in found.in_progress:  # relative to the outputs, unwrapped: a path to copy
        console.print(f"  {safe_markup(relative_text(run.path, found.root))}  (last written {run.age()})",
                      highlight=False, soft_wrap=True)

"""The ranking as a rich table, and the commands that make what unscored candidates lack."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mtlvsift.display import safe_markup
from mtlvsift.recommend.advice import Candidate
from mtlvsift.tasks import display_name

METHOD_NAMES = {"mtl": "MTL", "stilts": "STILTs"}


def rule_text(rule: dict) -> str:
    """How often the size rule's pick held on significant cells of the finished grid."""
    if _method_text(rule) == "tie":
        return "no pick to check"
    if not rule["judged"]:
        return "no measured cells yet"
    return f"held {rule['held']}/{rule['judged']}"


def _method_text(rule: dict) -> str:
    """The size rule's pick; 'tie' where both training sets have the same size (no pick)."""
    if rule["method"] is None and rule["target_size"] == rule["support_size"]:
        return "tie"
    return METHOD_NAMES.get(rule["method"], "-")


def _number(value: float | None, sign: bool = False) -> str:
    return "-" if value is None else f"{value:+.3f}" if sign else f"{value:.3f}"


def print_ranking(target: str, entries: list[Candidate], console: Console | None = None) -> None:
    console = console or Console(width=max(Console().width, 120))  # the nine columns in full
    table = Table(title=f"Supporting tasks for {safe_markup(display_name(target))}")
    for column in ("rank", "support", "size rule", "rule on your grid", "LogME gain", "LogME",
                   "LogME base", "examples", "seconds"):
        table.add_column(column, justify="left" if column in ("support", "size rule",
                                                               "rule on your grid") else "right")
    for e in entries:
        table.add_row(str(e.rank or "-"), safe_markup(display_name(e.support)),
                      _method_text(e.size_rule), rule_text(e.size_rule),
                      _number(e.logme_gain, sign=True), _number(e.logme), _number(e.logme_base),
                      str(e.examples or "-"), "-" if e.seconds is None
                      else f"{e.seconds:.1f}" + (" (cached)" if e.features_cached else ""))
    console.print(table)
    for e in entries:
        if e.command:
            console.print(f"{safe_markup(display_name(e.support))} has no finished single runs to "
                          f"score; make them with:", highlight=False)
            console.print(f"  {e.command}", markup=False, highlight=False, soft_wrap=True)  # one line, to copy

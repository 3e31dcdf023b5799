"""How the benchmarks report: the machine and versions, per-configuration tables (rich and
markdown for bench/RESULTS.md or RESULTS-tools.md), the results file."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.measure import FLOPS_FORMULA, PEAK_TFLOPS


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    return f"CPU ({name or platform.machine()}), {os.cpu_count()} cores"


def meta(command: str, **extra: Any) -> dict[str, Any]:
    import torch
    import transformers

    return {"date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
            "command": command, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "flops": FLOPS_FORMULA, **extra}


def save_json(path: Path, data: Any) -> None:
    """Write a results file whole or not at all (a run cut short keeps the previous one)."""
    from mtlvsift.run_folder import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


def fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def batches_label(case: dict[str, Any]) -> str:
    """How a configuration fed the encoder: padded, packed, packed to compile budgets, varlen."""
    if case.get("kind") == "trainer" or not case.get("packing"):
        return "padded"
    kind = "packed, varlen" if case.get("varlen_attention") else "packed"
    return f"{kind}, budgets" if case.get("compile") else kind


def table_rows(cases: list[dict[str, Any]], gpu: bool) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the per-configuration table (GFLOP/s on a CPU).

    "computed/real": tokens the encoder computed per real token in training (padding, or the
    filler of compile budgets); "ckpt wait s": the loop's blocked time per checkpoint; "ckpt
    write s": the write itself, which runs in the background."""
    unit, scale = ("TFLOP/s", 1.0) if gpu else ("GFLOP/s", 1000.0)
    head = (["model", "configuration", "batches", "precision", "train ex/s", "eval ex/s", "tokens/ex",
             "computed/real", f"train {unit}"] + ([f"% of {PEAK_TFLOPS:g}"] if gpu else [])
            + [f"eval {unit}"] + (["peak GiB"] if gpu else []) + ["ckpt wait s", "ckpt write s"])
    rows = []
    for c in cases:
        if "error" in c:
            continue
        train = c["train_tflops"] * scale if c.get("train_tflops") else None
        evals = c["eval_tflops"] * scale if c.get("eval_tflops") else None
        computed = c.get("train_computed_per_real_token")
        if computed is None and c.get("train_padded_tokens_per_example"):  # the Trainer pads
            computed = c["train_padded_tokens_per_example"] / c["train_tokens_per_example"]
        row = [c.get("model_name", ""), c["name"], batches_label(c), c["precision"],
               fmt(c.get("train_examples_per_s"), 0 if gpu else 1),
               fmt(c.get("eval_examples_per_s"), 0 if gpu else 1),
               fmt(c.get("train_tokens_per_example"), 1), fmt(computed, 2), fmt(train, 1 if gpu else 2)]
        row += [fmt(100 * c["train_tflops"] / PEAK_TFLOPS, 1) if c.get("train_tflops") else "—"] if gpu else []
        row += [fmt(evals, 1 if gpu else 2)] + ([fmt(c.get("peak_memory_gib"), 1)] if gpu else [])
        rows.append(row + [fmt(c.get("checkpoint_seconds_per_eval"), 3),
                           fmt(c.get("checkpoint_write_seconds_per_eval"), 2)])
    return head, rows


def rich_table(title: str, head: list[str], rows: list[list[str]], left: int = 2):
    """A rich table (e.g. of ``table_rows``); the first ``left`` columns left-aligned."""
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(head):
        table.add_column(column, justify="left" if i < left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def markdown(head: list[str], rows: list[list[str]], left: int = 2) -> str:
    """A markdown table, for bench/RESULTS.md."""
    separator = ["---"] * left + ["---:"] * (len(head) - left)
    return "\n".join("| " + " | ".join(row) + " |" for row in [head, separator, *rows])


def console():
    """A rich console wide enough for the tables also when the output is a file or a pipe."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)

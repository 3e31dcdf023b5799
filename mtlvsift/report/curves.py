"""Training curves (``compare.py curves``): each run's dev score and training loss against the
step, one line per seed, coloured by configuration, one figure per target of each report.

The dev scores come from result.json's ``history`` (every evaluation), the losses from the run
folder's ``train_log.jsonl`` (every ``--log-every`` steps). Both are untrusted: an evaluation or
a log line that is not what a trainer writes is skipped, with one warning per file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from mtlvsift.display import safe_markup, safe_text
from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import METHODS
from mtlvsift.report.variants import report_keys, report_records
from mtlvsift.run_folder import RunFolder, atomic_write, report_slug
from mtlvsift.run_index import discover, require_records
from mtlvsift.run_record import RunRecord
from mtlvsift.scores import is_number, is_score
from mtlvsift.tasks import display_name, normalize_task_name

MAX_LOG_BYTES = 512 * 2**20  # a log this large is not one a trainer wrote (10M steps ~ 1 GB)
METHOD_ORDER = {m: i for i, m in enumerate(METHODS)}  # single, stilts, mtl, mtl_all


@dataclass
class Curve:
    """One run's curves: (step, value) pairs in the order the run wrote them."""

    label: str  # the configuration: 'single', 'STILTs ← WNLI', 'MTL + WNLI', 'MTL_All'
    seed: int
    dev: list[tuple[int, float]] = field(default_factory=list)  # main dev score, points
    loss: list[tuple[int, float]] | None = field(default_factory=list)  # None: no log file


@dataclass
class TargetCurves:
    """Every run of one report that trains ``target``, and its majority-class baseline."""

    target: str
    curves: list[Curve]
    baseline: float | None = None  # points: the constant prediction's dev score


def configuration_label(record: RunRecord) -> str:
    """How the figure's legend names a run's configuration (within its report)."""
    support = ", ".join(display_name(s) for s in record.support)
    label = {"single": "single", "stilts": f"STILTs ← {support}", "mtl": f"MTL + {support}",
             "mtl_all": "MTL_All"}[record.method]
    return label + (f" [{record.variant}]" if record.variant else "")


def dev_points(record: RunRecord, task: str, warn: Callable[[str], None]) -> list[tuple[int, float]]:
    """``task``'s main dev score (points) at each evaluation of the record's history."""
    metric = record.main_metrics.get(task)
    points, bad = [], 0
    for entry in record.history:
        entry = entry if isinstance(entry, dict) else {}
        metrics = entry.get("metrics")
        scores = metrics.get(task) if isinstance(metrics, dict) else None
        value = scores.get(metric) if isinstance(scores, dict) else None
        if _is_step(entry.get("step")) and is_score(value, task, metric):
            points.append((entry["step"], value * 100))
        else:
            bad += 1
    if bad:
        warn(f"{safe_text(record.path)}: skipped {bad} of {len(record.history)} evaluations in "
             f"'history' without a step and a {display_name(task)} {metric} score")
    return points


def loss_points(path: Path, warn: Callable[[str], None]) -> list[tuple[int, float]] | None:
    """The (step, loss) pairs of a train_log.jsonl; None without one (results copied without
    their logs: said once, not per run); [] and a warning when it cannot be read."""
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            warn(f"{safe_text(path)}: over {MAX_LOG_BYTES >> 20} MiB, not a training log; skipped")
            return []
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        warn(f"{safe_text(path)}: cannot be read ({safe_text(exc.strerror or exc)}); no loss curve")
        return []
    points, bad = [], []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            entry = None
        if (isinstance(entry, dict) and _is_step(entry.get("step"))
                and is_number(entry.get("loss"))):
            points.append((entry["step"], float(entry["loss"])))
        elif line.strip():
            bad.append(number)
    if bad:
        warn(f"{safe_text(path)}: skipped {len(bad)} of {len(lines)} lines that are not log "
             f"entries (a step and a finite loss; first: line {bad[0]})")
    return points


def _log_file(record: RunRecord) -> Path:
    return RunFolder(record.folder).log_file


def _is_step(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def target_curves(records: list[RunRecord], target: str,
                  warn: Callable[[str], None]) -> TargetCurves:
    """The curves of every run of ``records`` (one report's) that trains ``target``; MTL_All's
    dev curve is the target's, its loss the whole run's."""
    runs = [r for r in records if r.target == target or (r.method == "mtl_all" and target in r.tasks)]
    runs.sort(key=lambda r: (METHOD_ORDER[r.method], configuration_label(r), r.seed))
    curves = [Curve(configuration_label(r), r.seed, dev_points(r, target, warn),
                    loss_points(_log_file(r), warn)) for r in runs]
    baselines = [r.baseline_scores[target] for r in runs if target in r.baseline_scores]
    baseline = max(set(baselines), key=baselines.count) * 100 if baselines else None
    return TargetCurves(target, [c for c in curves if c.dev or c.loss], baseline)


def trained_targets(records: list[RunRecord]) -> list[str]:
    """The tasks some run of ``records`` reports a dev score for, sorted."""
    return sorted({t for r in records for t in (r.tasks if r.method == "mtl_all" else [r.target])})


def chosen_targets(records: list[RunRecord], asked: tuple[str, ...]) -> list[str]:
    """``asked`` (task names, normalized), or every target; one not trained is an error."""
    trained = trained_targets(records)
    if not asked:
        return trained
    names = list(dict.fromkeys(normalize_task_name(a) for a in asked))
    unknown = [n for n in names if n not in trained]
    if unknown:
        raise MtlvsiftError(f"No run trains {', '.join(safe_text(n) for n in unknown)}; "
                            f"the runs' targets are: {', '.join(trained) or 'none'}.")
    return names


def write_curves(outputs: Path, report_dir: Path | None = None, model: str | None = None,
                 targets: tuple[str, ...] = (), console: Console | None = None,
                 err_console: Console | None = None) -> list[Path]:
    """One PNG per target of each report under ``outputs`` (or of ``model`` only), in the
    report's folder as compare() writes it: ``<report-dir>/curves/<target>.png``, or
    ``<report-dir>/<report>/curves/`` when there are several reports."""
    console = console or Console()
    err_console = err_console or Console(stderr=True)
    found = discover(outputs)
    warnings = list(found.warnings)
    require_records(found)
    records = [r for r in found.records if model in (None, r.model)]
    if not records:
        raise MtlvsiftError(f"No runs of model '{model}' under {outputs}. Models found: "
                            f"{', '.join(found.models)}.")
    report_dir = Path(report_dir) if report_dir else Path(outputs) / "report"
    asked = chosen_targets(records, targets)
    keys = report_keys(records)
    written: list[Path] = []
    for key in keys:
        own = report_records(records, key)
        folder = report_dir / report_slug(key.model, key.protocol, key.variant_slug()) if len(
            keys) > 1 else report_dir
        for target in [t for t in asked if t in trained_targets(own)]:
            drawn = target_curves(own, target, warnings.append)
            if not drawn.curves:
                continue
            label = " · ".join(filter(None, [key.model, key.label()]))
            path = folder / "curves" / f"{target}.png"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, curves_figure(drawn, label))
            except OSError as exc:
                raise MtlvsiftError(f"Could not write {path}: {exc}. Choose another "
                                    f"--report-dir, or free space there.") from exc
            written.append(path)
    for warning in warnings:
        err_console.print(f"[yellow]Warning:[/] {safe_markup(warning)}", highlight=False)
    unlogged = sum(not _log_file(r).exists() for r in records)
    if unlogged:
        console.print(f"{unlogged} run(s) have no {_log_file(records[0]).name} (records copied without their "
                      f"run folders?): their loss panels are empty.", highlight=False)
    if not written:
        console.print("No run has a dev score or a training loss to draw.")
    for folder in dict.fromkeys(p.parent for p in written):
        names = ", ".join(p.name for p in written if p.parent == folder)
        console.print(f"Curves written to {safe_markup(folder)}/: {names}", highlight=False)
    return written


def curves_figure(drawn: TargetCurves, report: str) -> bytes:
    """The target's dev score (left) and the training loss (right) against the step, one line
    per seed, a colour per configuration; the baseline dotted."""
    # matplotlib only when a figure is drawn (compare.py --help stays light)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from mtlvsift.report.figures import DPI, png_bytes

    fig = Figure(figsize=(11, 4.6), dpi=DPI, layout="constrained")
    dev_ax, loss_ax = fig.subplots(1, 2)
    labels = list(dict.fromkeys(c.label for c in drawn.curves))
    palette = [f"C{i}" for i in range(10)] + ["#8c564b", "#17becf", "#bcbd22", "#7f7f7f"]
    colors = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    for curve in drawn.curves:
        for ax, points in ((dev_ax, curve.dev), (loss_ax, curve.loss)):
            if points:
                ax.plot(*zip(*points), color=colors[curve.label], linewidth=1, alpha=0.8,
                        marker="o" if ax is dev_ax else None, markersize=2.5)
    if drawn.baseline is not None:
        dev_ax.axhline(drawn.baseline, color="#555555", linewidth=0.8, linestyle=":")
    name = display_name(drawn.target)
    dev_ax.set_ylabel(f"{name} dev score (points)", fontsize=8)
    loss_ax.set_ylabel("training loss (the run's: every task of an MTL run)", fontsize=8)
    for ax in (dev_ax, loss_ax):
        ax.set_xlabel("step", fontsize=8)
        ax.grid(color="#eeeeee")
        ax.tick_params(labelsize=8)
    seeds = {label: sorted({c.seed for c in drawn.curves if c.label == label}) for label in labels}
    handles = [Line2D([], [], color=colors[label], label=f"{_plain(label)} (seeds "
                      f"{', '.join(map(str, seeds[label]))})") for label in labels]
    if drawn.baseline is not None:
        handles.append(Line2D([], [], color="#555555", linestyle=":",
                              label=f"majority-class baseline {drawn.baseline:.1f}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3),
               fontsize=8, frameon=False)
    fig.suptitle(f"{name}: training curves, one line per seed ({_plain(report)})", fontsize=10)
    return png_bytes(fig)


def _plain(text: str) -> str:
    """Record text shown as it is: '$' would start matplotlib's mathtext."""
    return text.replace("$", r"\$")

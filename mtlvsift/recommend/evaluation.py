"""How good the advice was: recommend.py's saved rankings against the STILTs gains a finished grid
measured. Per target, the Spearman correlation between the LogME gains and the measured gains
(STILTs mean minus the single-task mean, in points) over the supports both know, and regret@1:
the measured gain of the best measured support minus that of the support ranked first."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FOLDER = "recommendations"  # under the outputs root: <report slug>/<target>.json
MAX_RANKING_BYTES = 1_000_000


def ranking_path(outputs: Path, slug: str, target: str) -> Path:
    """Where recommend.py keeps its latest ranking of ``target``'s candidates for one report's
    model, protocol and data variant (``run_folder.report_slug``)."""
    return Path(outputs) / FOLDER / slug / f"{target}.json"


def load_rankings(outputs: Path, slug: str, known_tasks: set[str]
                  ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """{target: {support: logme_gain}} of the saved rankings, and a warning per file refused.
    The files are untrusted: names must be known tasks, gains finite numbers."""
    rankings: dict[str, dict[str, float]] = {}
    warnings: list[str] = []
    folder = Path(outputs) / FOLDER / slug
    if not folder.is_dir():
        return rankings, warnings
    for path in sorted(folder.glob("*.json")):
        try:
            if path.stat().st_size > MAX_RANKING_BYTES:
                raise ValueError("larger than 1 MB")
            target, gains = _parse_ranking(json.loads(path.read_text(encoding="utf-8")),
                                           known_tasks)
        except (OSError, UnicodeDecodeError, ValueError) as error:
            warnings.append(f"Skipped the saved ranking {path.name}: {error}.")
            continue
        rankings[target] = gains
    return rankings, warnings


def _parse_ranking(data: Any, known_tasks: set[str]) -> tuple[str, dict[str, float]]:
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
        raise ValueError("not a ranking written by recommend.py")
    target = data.get("target")
    if target not in known_tasks:
        raise ValueError("its target is not a known task")
    gains: dict[str, float] = {}
    for entry in data["candidates"]:
        if not isinstance(entry, dict) or entry.get("support") not in known_tasks:
            raise ValueError("a candidate is not a known task")
        gain = entry.get("logme_gain")
        if gain is None:  # a candidate without single runs: unranked
            continue
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain):
            raise ValueError(f"the LogME gain of {entry['support']} is not a finite number")
        gains[entry["support"]] = float(gain)
    return target, gains


def evaluate(predicted: Mapping[str, Mapping[str, float]],
             measured: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Per target with at least two supports both predicted and measured: ``supports``,
    ``spearman`` (None when either side is constant), ``top_ranked``, ``best_measured`` and
    ``regret_at_1`` (points); then their means over the targets (``mean_spearman`` over those
    with a correlation)."""
    from scipy.stats import spearmanr  # not at import: recommend.py's early errors

    targets: dict[str, dict[str, Any]] = {}
    for target in sorted(set(predicted) & set(measured)):
        supports = sorted(set(predicted[target]) & set(measured[target]))
        if len(supports) < 2:
            continue
        scores = np.array([predicted[target][s] for s in supports])
        gains = np.array([measured[target][s] for s in supports])
        constant = np.ptp(scores) == 0 or np.ptp(gains) == 0
        top = supports[int(np.argmax(scores))]
        best = supports[int(np.argmax(gains))]
        targets[target] = {
            "supports": supports,
            "spearman": None if constant else float(spearmanr(scores, gains).statistic),
            "top_ranked": top, "best_measured": best,
            "regret_at_1": float(measured[target][best] - measured[target][top])}
    correlations = [t["spearman"] for t in targets.values() if t["spearman"] is not None]
    regrets = [t["regret_at_1"] for t in targets.values()]
    return {"targets": targets,
            "mean_spearman": float(np.mean(correlations)) if correlations else None,
            "mean_regret_at_1": float(np.mean(regrets)) if regrets else None}

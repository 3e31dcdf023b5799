"""Text shared by the terminal report and the report files: number formats, phrases."""

from __future__ import annotations

import math
from pathlib import Path

from mtlvsift.report.baseline_runs import runs_at_baseline
from mtlvsift.report.inference import ASO_THRESHOLD, CORRECTIONS, MIN_SEEDS
from mtlvsift.report.stats import BASELINE_MARGIN, PAPER_HEURISTIC, Analysis, Group
from mtlvsift.report.tables import mtl_all_label
from mtlvsift.report.verdicts import Accuracy, heuristic_by_correction, heuristic_by_sign
from mtlvsift.tasks import display_name

HEURISTIC_RULE = ("MTL when the target's training set is smaller than the supporting one, STILTs "
                  "when larger; equal sizes are a tie, no prediction")
PAPER_PHRASE = "{}/{}, {:.1%}".format(*PAPER_HEURISTIC, PAPER_HEURISTIC[0] / PAPER_HEURISTIC[1])
TIE_LEGEND = ("a size tie (both training sets have the same size, e.g. every task capped by "
              "--max-train-examples): the size heuristic does not predict it")
METHOD_NAMES = {"mtl": "pairwise MTL", "stilts": "STILTs"}
CORRECTION_NAMES = {"none": "no correction", "holm": "Holm", "bh": "Benjamini-Hochberg"}
# What a report says instead of a figure with nothing to draw.
FIGURE1_EMPTY = "No cell has an MTL or a STILTs run yet: no Figure 1."
FIGURE2_EMPTY = ("No size-experiment runs (--target-fraction F --support-ratio K) yet: "
                 "no Figure 2.")


def fmt(value: float | None, digits: int = 1, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def lacking_phrase(count: int) -> str:
    """'1 configuration lacks seeds', '3 configurations lack seeds'."""
    return f"{count} configuration lacks seeds" if count == 1 else f"{count} configurations lack seeds"


def fmt_p(p: float | None) -> str:
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def group_text(group: Group | None) -> str:
    """'84.2 ± 0.3 (n=5)'."""
    if group is None:
        return "—"
    spread = f" ± {group.std:.1f}" if group.std is not None else ""
    return f"{group.mean:.1f}{spread} (n={group.n})"


def report_name(a: Analysis) -> str:
    """'distilroberta-base', or 'minilm (n-300)', 'minilm (protocol original, n-300)'."""
    label = a.key.label()
    return f"{a.model} ({label})" if label else a.model


def seeds_phrase(a: Analysis) -> str:
    """The seeds in use: 'seeds 0, 1 (2 per cell)'; per cell: the seeds of a method in a cell."""
    seeds = a.seeds_in_use
    if not seeds:
        return "no seeds yet"
    text = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
    sizes = sorted({g.n for c in a.cells.values() for g in (c.mtl, c.stilts) if g})
    if sizes:
        text += f" ({sizes[0] if len(sizes) == 1 else f'{sizes[0]}–{sizes[-1]}'} per cell)"
    return text


def overview_line(a: Analysis, outputs: Path) -> str:
    runs = len(a.records)
    return (f"{runs} run record{'' if runs == 1 else 's'} of {report_name(a)} under `{outputs}` · "
            f"{seeds_phrase(a)} · {a.test_name}, alpha = {a.alpha:g}, "
            f"{CORRECTION_NAMES[a.correction]}, equivalence margin {a.equivalence_margin:g} points")


def few_seeds_line(a: Analysis) -> str:
    """What a report whose cells have fewer than MIN_SEEDS seeds cannot say; '' otherwise."""
    few = [c for c in a.cells.values() if c.complete and min(c.mtl.n, c.stilts.n) < MIN_SEEDS]
    if not few:
        return ""
    return (f"{len(few)} of {sum(c.complete for c in a.cells.values())} cells have fewer than "
            f"{MIN_SEEDS} seeds of a method: they get no p value and stay open; add seeds.")


def sequential_line(a: Analysis) -> str:
    """The cells whose seeds run_grid.py --until-decided added after looking at their verdicts
    (``sequential``): their p values are not fixed-n ones; '' when there are none."""
    added = sorted(f"{display_name(c.target)} ← {display_name(c.support)}"
                   for c in a.cells.values() if c.sequential)
    if not added:
        return ""
    return (f"{len(added)} cell(s) got seeds from run_grid.py --until-decided after their verdict "
            f"was seen ({', '.join(added)}; `sequential` in cells.csv and summary.json): their "
            f"p values come from a sequential design and overstate significance; treat their "
            f"verdicts as exploratory (docs/compare.md).")


def accuracy_text(score: Accuracy) -> str:
    """'49/53, 92.5% [84.2, 96.6]' (the Wilson 90% interval); 'no cells' without any."""
    if not score.total:
        return "no cells"
    low, high = score.wilson_ci
    return f"{score.correct}/{score.total}, {score.accuracy:.1%} [{low:.1%}, {high:.1%}]"


def corrections_line(a: Analysis) -> str:
    """The heuristic's accuracy under each correction and by sign, and whether the paper's
    conclusion (the heuristic picks the better method) survives each correction here."""
    scores = heuristic_by_correction(a.cells.values(), a.alpha)
    parts = [f"{CORRECTION_NAMES[c]} {accuracy_text(scores[c])}" for c in CORRECTIONS]
    holds = [CORRECTION_NAMES[c] for c in CORRECTIONS if scores[c].above_chance]
    fails = [CORRECTION_NAMES[c] for c in CORRECTIONS if not scores[c].above_chance]
    verdict = ("no cell is significant under any correction: the paper's conclusion cannot be "
               "checked on this tree" if not any(s.total for s in scores.values())
               else "the paper's conclusion survives every correction on this tree" if not fails
               else "the paper's conclusion survives none of the corrections on this tree"
               if not holds
               else f"the paper's conclusion survives {', '.join(holds)} but not "
                    f"{', '.join(fails)} on this tree")
    return (f"Size heuristic over the significant cells (90% Wilson intervals): "
            f"{' · '.join(parts)} · every cell by the sign of its difference "
            f"{accuracy_text(heuristic_by_sign(a.cells.values()))}. So {verdict} (it survives "
            f"where the interval lies above 50%).")


def aso_line(a: Analysis) -> str:
    """What almost stochastic order says over the cells, or how to get it."""
    if not a.aso:
        return ("Almost stochastic order (Dror et al. 2019): not computed; compare.py --aso adds "
                "it per cell (pip install 'mtlvsift[aso]': deepsig, GPL-3.0).")
    tested = [c for c in a.cells.values() if c.stats is not None and c.stats.aso is not None]
    ahead = {m: sum(c.stats.aso_better == m for c in tested) for m in ("mtl", "stilts")}
    decided = [c for c in tested if c.verdict == "decided"]
    agree = sum(c.stats.aso_better == c.better for c in decided)
    bonferroni = f", Bonferroni over {len(tested)} cells" if a.correction != "none" else ""
    return (f"Almost stochastic order (deepsig, eps_min below {ASO_THRESHOLD:g} at confidence "
            f"{1 - a.alpha:g}{bonferroni}): MTL ahead in {ahead['mtl']} of {len(tested)} tested "
            f"cells, STILTs in {ahead['stilts']}, neither in "
            f"{len(tested) - ahead['mtl'] - ahead['stilts']}; it names the t-test's better method "
            f"in {agree} of the {len(decided)} decided cells.")


def baselines_line(a: Analysis) -> str:
    """'Majority-class baselines (dev, points): RTE 52.7 · MRPC 74.8'; '' without any."""
    if not a.baselines:
        return ""
    return ("Majority-class baselines (a constant prediction, dev, points): " + " · ".join(
        f"{display_name(t)} {a.baselines[t]:.1f}" for t in a.all_tasks if t in a.baselines))


def at_baseline_line(a: Analysis) -> str:
    """'At or below the majority-class baseline (...): single WNLI all 3 seeds · MTL WNLI ← RTE
    seeds 1, 2 of 3.'; '' when no run is."""
    parts = []
    for flag in runs_at_baseline(a):
        n, seeds = flag.group.n, flag.seeds
        which = f"all {n} seeds" if len(seeds) == n else (
            f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} of {n}")
        parts.append(f"{configuration_text(flag.group)} {which}")
    if not parts:
        return ""
    return (f"At or below the majority-class baseline (within {BASELINE_MARGIN:g} points: nothing "
            f"learned): {' · '.join(parts)}.")


def configuration_text(g: Group) -> str:
    """'single WNLI', 'MTL WNLI ← RTE (F = 0.5, K = 2)', 'MTL_All (size) WNLI', with its variant."""
    if g.method == "mtl_all":
        return f"{mtl_all_label([g])} {display_name(g.target)}"
    method = {"single": "single", "stilts": "STILTs", "mtl": "MTL"}[g.method]
    support = f" ← {', '.join(display_name(s) for s in g.support)}" if g.support else ""
    extra = ["" if g.target_fraction is None else f"F = {g.target_fraction:g}",
             "" if g.support_ratio is None else f"K = {g.support_ratio:g}"]
    extra = [e for e in extra if e] or ([g.variant] if g.variant else [])
    return f"{method} {display_name(g.target)}{support}" + (f" ({', '.join(extra)})" if extra else "")


def holdout_fractions(a: Analysis) -> list[float]:
    """The held-out fractions the report's runs selected on ([]: they selected on dev)."""
    return sorted({r.selection["fraction"] for r in a.records if r.selected_on == "holdout"})


def selection_line(a: Analysis) -> str:
    """Which split the report's runs selected their checkpoints on (a report holds one mode)."""
    fractions = holdout_fractions(a)
    if not fractions:
        return ("Selection: dev (the paper's): a score is the best of a run's dev evaluations, "
                "selected on the same dev set (biased upwards).")
    held = " / ".join(f"{100 * f:g}%" for f in fractions)
    return (f"Selection: held-out {held} of training: a score is the dev score of the checkpoint "
            f"selected on a part held out of each task's training set (not trained on).")


def tasks_line(a: Analysis) -> str:
    """'Tasks (training examples, main metric): RTE 2,490 accuracy · MYSENT 48 f1'."""
    parts = []
    for task in a.all_tasks:
        size = a.sizes.get(task)
        parts.append(f"{display_name(task)} {'?' if size is None else f'{size:,}'} "
                     f"{a.main_metrics.get(task, '?')}")
    return "Tasks (training examples, main metric): " + " · ".join(parts)


def relative_text(path: Path, root: Path) -> str:
    """``path`` relative to the outputs ``root`` where it lies inside it, else as it is."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def not_pooled_line(a: Analysis) -> str:
    """What the cells shown ``≠`` are and how they are fixed; '' when every cell is pooled."""
    refused = [c for c in a.cells.values() if c.refused]
    if not refused:
        return ""
    return (f"Cells not pooled (≠): {len(refused)}. Their seeds differ in what they were made "
            f"from or with (every reason below); once the runs they read are final, retrain them "
            f"with the commands below (`run_grid.py --retrain-stale` retrains only a grid's "
            f"stale seeds).")


def cell_name(target: str, support: str, arrow: str = "<-") -> str:
    """'RTE <- MNLI': a cell, target first."""
    return f"{display_name(target)} {arrow} {display_name(support)}"

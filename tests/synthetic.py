"""Synthetic run trees: run records (result.json) as the training scripts write them.

Used by the compare tests and to build the committed sample report (docs/compare.md):

    python tests/synthetic.py build/sample-outputs --size-experiments \
        --samplings size,uniform,dynamic

The paper-like tree follows the pattern of Weller et al. (2022): pairwise MTL beats STILTs when the
target's training set is smaller than the supporting one, by more the larger the ratio, with some
pair-specific noise (so the size heuristic misses a few cells); MTL_All trails the pairwise methods.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable

import numpy as np

from mtlvsift import run_options
from mtlvsift.names import DEFAULT_MODEL
from mtlvsift import run_record
from mtlvsift.tasks import GLUE_TASK_NAMES, GLUE_TASKS
from mtlvsift.train.config import TrainConfig, folder_name

# Rough DistilRoBERTa dev scores, in [0, 1] (main metric of each task).
BASE_SCORES = {"mnli": 0.84, "qqp": 0.885, "qnli": 0.905, "sst2": 0.925, "cola": 0.57,
               "stsb": 0.875, "mrpc": 0.87, "rte": 0.67, "wnli": 0.56}
SIZE_RATIOS = (1 / 3, 1 / 2, 1.0, 2.0, 3.0)
# GLUE dev scores of the training set's majority class (MRPC, QQP: the mean of accuracy and an F1
# of 0.81 and 0; CoLA's MCC is 0). STS-B has none: a constant's correlation is undefined.
MAJORITY_BASELINES = {"mnli": 0.354, "qqp": 0.316, "qnli": 0.505, "sst2": 0.509, "cola": 0.0,
                      "mrpc": 0.748, "rte": 0.527, "wnli": 0.563}


def run_name(method: str, target: str | None, support: Iterable[str], variant: str,
             protocol: str = "standard") -> str:
    return folder_name("all" if method == "mtl_all" else "--".join([target, *support]), variant, protocol)


def write_record(root: Path, method: str, target: str | None = None, support: Iterable[str] = (),
                 seed: int = 0, score: float | None = 0.7, *, model: str = DEFAULT_MODEL,
                 variant: str = "", sampling: str | None = None,
                 task_scores: dict[str, float] | None = None,
                 train_sizes: dict[str, int] | None = None, tasks: list[str] | None = None,
                 target_fraction: float | None = None, support_ratio: float | None = None,
                 folder: str | None = None, protocol: str = "standard",
                 start_model: dict | None = None, single_scores: dict | None = None,
                 single_scores_from: dict | None = None, baselines: dict[str, float] | None = None,
                 options: dict | None = None, available_sizes: dict[str, int] | None = None,
                 data_fingerprints: dict | None = None, holdout: float | None = None,
                 rows_per_epoch: list[list[int]] | None = None) -> Path:
    """Write one run folder (config.json + result.json); returns the result.json path.

    ``rows_per_epoch``: each epoch's rows per task (default: one epoch, one pass over each).
    ``baselines``: task -> its constant prediction's main dev score (recorded for the run's
    tasks); ``options``: more TrainConfig fields (``max_train_examples``, ``data_dir``, ...);
    ``available_sizes``: the training rows before any cap (default: ``train_sizes``);
    ``holdout``: selected on that fraction held out of training (each selection score 0.01 above
    the dev score; ``variant`` should hold ``select-holdout``)."""
    support = list(support)
    if tasks is None:
        tasks = list(task_scores) if method == "mtl_all" else [target, *support]
    if task_scores is None:
        task_scores = {target: score}
        task_scores.update({s: BASE_SCORES.get(s, 0.8) for s in support if method == "mtl"})
    if train_sizes is None:
        train_sizes = {t: GLUE_TASKS[t].train_size if t in GLUE_TASKS else 1000 for t in tasks}
    if method in ("mtl", "mtl_all") and sampling is None:
        sampling = "size" if method == "mtl_all" else "dynamic"
    name = run_name(method, target, support, variant, protocol)
    run_dir = root / method / (folder or name) / f"seed-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)

    def best(task: str, value: float) -> dict:
        metric = GLUE_TASKS[task].main_metric if task in GLUE_TASKS else "accuracy"
        held = {} if holdout is None else {"selection_score": value + 0.01}
        return {"step": 120, "epoch": 3.5, "task": task, "metric": metric, "score": value,
                "metrics": {t: {metric: v} for t, v in task_scores.items()}, **held}

    if method == "mtl_all":
        main = best(tasks[0], float(np.mean(list(task_scores.values()))))
    else:
        main = best(target, score)
    # The method's defaults, then what the record says (not checked: a record may be odd).
    values = {**run_options.resolve(method, {}), "model": model, "seed": seed, "sampling": sampling,
              "batching": "heterogeneous" if sampling else None, "target_fraction": target_fraction,
              "support_ratio": support_ratio, "protocol": protocol, **(options or {})}
    selection = None
    if holdout is not None:
        values.update(select_on="holdout", holdout_fraction=holdout)
        selection = {"split": "holdout", "fraction": holdout,
                     "rows": {t: max(1, round(holdout * n)) for t, n in train_sizes.items()}}
    config = TrainConfig(method=method, tasks=tasks, target=target, support=support, name=name,
                         variant=variant, options=values, start_model=start_model,
                         single_scores=single_scores, single_scores_from=single_scores_from,
                         data_fingerprints=data_fingerprints)
    progress = SimpleNamespace(
        train_seconds=100.0, eval_seconds=[1.0], save_seconds=[2.0], checkpoint_blocked_seconds=[0.01],
        examples=90000, step=700,
        best=main, best_by_task={t: best(t, v) for t, v in task_scores.items()},
        history=[{"step": 60, "epoch": 0.5,
                  "metrics": {t: {"accuracy": v - 0.02} for t, v in task_scores.items()},
                  "probabilities": {t: 1 / len(tasks) for t in tasks}}],
        probabilities={"0": [1 / len(tasks)] * len(tasks)},
        epoch_batches={str(e): 700 for e in range(len(rows_per_epoch or [None]))},
        epoch_rows={str(e): rows for e, rows in enumerate(rows_per_epoch or [[train_sizes.get(t, 0) for t in tasks]])})
    device = {"device": "cuda", "num_processes": 1, "mixed_precision": "bf16"}
    recorded = {t: {"prediction": "majority", "metrics": {"accuracy": b}, "score": b}
                for t, b in (baselines or {}).items() if t in tasks}
    record = run_record.build_record(config.as_dict(), progress, train_sizes,
                                     available_sizes or train_sizes, device, recorded or None,
                                     selection)
    (run_dir / "config.json").write_text(json.dumps(config.identity()))
    path = run_dir / "result.json"
    run_record.write_record(path, record)
    return path


def write_in_progress(root: Path, method: str, name: str, seed: int) -> Path:
    """A run that has started (config.json) and not finished (no result.json)."""
    run_dir = root / method / name / f"seed-{seed}"
    (run_dir / "state").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"seed": seed}))
    return run_dir


def _noise(task: str) -> float:
    """Seed-to-seed standard deviation: small datasets vary more."""
    return 0.002 + 0.015 / math.sqrt(GLUE_TASKS[task].train_size / 1000)


def paper_like_tree(root: Path, tasks: Iterable[str] = GLUE_TASK_NAMES,
                    seeds: Iterable[int] = range(5), model: str = DEFAULT_MODEL,
                    samplings: Iterable[str] = ("size",),
                    size_experiments: bool = False, rng_seed: int = 8,
                    baselines: dict[str, float] | None = MAJORITY_BASELINES) -> int:
    """Write single, STILTs and MTL runs for every ordered pair, and MTL_All; returns the count.
    Every record holds ``baselines`` (GLUE's majority classes by default)."""
    rng = np.random.default_rng(rng_seed)
    tasks, seeds = list(tasks), list(seeds)
    n = {t: GLUE_TASKS[t].train_size for t in tasks}
    written = 0

    def draw(mean: float, task: str) -> float:
        return float(np.clip(mean + rng.normal(0, _noise(task)), 0, 1))

    for t in tasks:
        for seed in seeds:
            write_record(root, "single", t, (), seed, draw(BASE_SCORES[t], t), model=model,
                         baselines=baselines)
            written += 1
    for t in tasks:
        for s in tasks:
            if s == t:
                continue
            stilts = BASE_SCORES[t] + rng.normal(0.006, 0.006)
            # The paper's pattern: MTL's edge grows with log(support size / target size).
            diff = 0.012 * math.log10(n[s] / n[t]) + rng.normal(0, 0.007)
            for seed in seeds:
                write_record(root, "stilts", t, [s], seed, draw(stilts, t), model=model,
                             baselines=baselines)
                scores = {t: draw(stilts + diff, t), s: draw(BASE_SCORES[s] - 0.002, s)}
                write_record(root, "mtl", t, [s], seed, scores[t], model=model, task_scores=scores,
                             baselines=baselines)
                written += 2
    for sampling in samplings:
        for seed in seeds:
            scores = {t: draw(BASE_SCORES[t] - 0.012, t) for t in tasks}
            variant = "" if sampling == "size" else f"sampling-{sampling}"
            write_record(root, "mtl_all", None, (), seed, None, model=model, variant=variant,
                         baselines=baselines,
                         sampling=sampling, task_scores=scores, tasks=tasks)
            written += 1
    if size_experiments:
        written += size_experiment_tree(root, seeds=seeds, model=model, rng=rng)
    return written


def size_experiment_tree(root: Path, target: str = "qnli", support: str = "mnli",
                         fractions: Iterable[float] = (0.05, 0.2), seeds: Iterable[int] = range(5),
                         model: str = DEFAULT_MODEL, rng: np.random.Generator | None = None) -> int:
    """Figure 2's runs: target subsampled to F, support to K times the target's used size."""
    rng = rng or np.random.default_rng(11)
    written = 0
    for fraction in fractions:
        used = int(GLUE_TASKS[target].train_size * fraction)
        base = BASE_SCORES[target] - 0.025 * math.log10(1 / fraction)
        for ratio in SIZE_RATIOS:
            variant = f"tf-{fraction:g}_sr-{ratio:.2g}"
            sizes = {target: used, support: int(round(used * ratio))}
            for method, edge in (("stilts", 0.0), ("mtl", 0.018 * math.log2(ratio))):
                for seed in seeds:
                    score = float(base + edge + rng.normal(0, 0.004))
                    scores = {target: score, support: BASE_SCORES[support] - 0.01}
                    write_record(root, method, target, [support], seed, score, model=model,
                                 variant=variant, train_sizes=sizes, target_fraction=fraction,
                                 support_ratio=ratio,
                                 task_scores=scores if method == "mtl" else None)
                    written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write the runs into (an outputs tree)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--samplings", default="size", help="MTL_All samplings, comma-separated")
    parser.add_argument("--size-experiments", action="store_true", help="add Figure 2's runs")
    args = parser.parse_args()
    count = paper_like_tree(args.root, seeds=range(args.seeds), model=args.model,
                            samplings=args.samplings.split(","),
                            size_experiments=args.size_experiments)
    print(f"wrote {count} run records under {args.root}")


if __name__ == "__main__":
    main()

"""--select-on holdout: the held-out part of each task's training set (train/data/holdout.py),
checkpoints selected on it and dev reported (run_record.keep_if_best), the record's
``selection``, the plan, the identity, and compare.py's separate report per selection mode."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import load_script, read_result, run_dir, run_script, tiny_args, write_tiny_glue
from synthetic import write_record
from mtlvsift import run_record
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import get_task
from mtlvsift.train.config import mtl_config, stilts_config
from mtlvsift.train.data.holdout import carve, holdout_size

HOLDOUT = {"select_on": "holdout"}
LR = 1e-2  # the tiny encoder learns the held-out part within the run


def _labels(tsv: Path, column: str) -> list[str]:
    with open(tsv, newline="") as handle:
        return [row[column] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]


def test_rte_holdout_is_249_fixed_stratified_rows(glue_dir, minilm_path):
    """RTE's 2,490 training rows at 0.1: 249 held out, each label within one row of 10% of its
    rows, the same rows whatever --seed or --data-seed, never among the training rows."""
    from transformers import AutoTokenizer

    from mtlvsift.train.batches.loader import prepare_task_data

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    runs = [stilts_config("rte", None, {**HOLDOUT, "data_dir": str(glue_dir), "seed": seed,
                                        "data_seed": data_seed, "max_train_examples": cap})
            for seed, data_seed, cap in ((0, 0, None), (3, 0, None), (0, 2, 500))]
    data = [prepare_task_data(config, tokenizer, lambda: _nothing())[0] for config in runs]
    held = data[0].holdout_rows
    assert len(held) == 249 and len(data[0].holdout) == 249
    for other in data[1:]:
        assert np.array_equal(other.holdout_rows, held)
    assert [len(d.train) for d in data] == [2241, 2241, 500]
    for d in data:
        assert not set(d.train_rows.tolist()) & set(held.tolist())
    assert sorted(data[0].train_rows.tolist() + held.tolist()) == list(range(2490))
    labels = np.asarray(_labels(glue_dir / "RTE" / "train.tsv", "label"))
    for label in ("entailment", "not_entailment"):
        assert abs(np.sum(labels[held] == label) - 0.1 * np.sum(labels == label)) <= 1
    # The tokenized part holds the file's rows: its labels are theirs.
    names = data[0].task.label_names
    assert [names[int(y)] for y in data[0].holdout["label"]] == labels[held].tolist()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_regression_is_stratified_by_quantile_and_sizes_are_checked():
    rng = np.random.default_rng(5)
    labels = np.round(rng.uniform(0, 5, 1000), 2)
    held = carve(labels, 0.2, "stsb")
    assert len(held) == 200 and np.array_equal(held, carve(labels, 0.2, "stsb"))
    deciles = np.searchsorted(np.quantile(labels, np.linspace(0, 1, 11)[1:-1]), labels, side="right")
    for d in range(10):
        assert abs(np.sum(deciles[held] == d) - 0.2 * np.sum(deciles == d)) <= 1
    assert holdout_size("rte", 2490, 0.1) == 249 and holdout_size("rte", 15, 0.1) == 2
    with pytest.raises(MtlvsiftError, match="holds out 0: selection needs at least 1 held-out row"):
        holdout_size("rte", 4, 0.1)
    with pytest.raises(MtlvsiftError, match="at least 2 held-out rows"):
        holdout_size("stsb", 12, 0.1)


def _history(dev: list[float], held: list[float] | None) -> list[dict]:
    return [{"step": 10 * (i + 1), "epoch": 0.5 * (i + 1), "metrics": {"rte": {"accuracy": d}},
             "probabilities": {"rte": 1.0}}
            | ({} if held is None else {"selection_metrics": {"rte": {"accuracy": held[i]}}})
            for i, d in enumerate(dev)]


def _select(history: list[dict], names: list[str], target: str | None) -> SimpleNamespace:
    progress = SimpleNamespace(best=None, best_by_task={})
    for entry in history:
        run_record.keep_if_best(progress, entry, names, target)
    return progress


def test_holdout_selects_its_argmax_and_reports_dev_there():
    dev = [0.60, 0.70, 0.55, 0.58]
    held = [0.50, 0.52, 0.66, 0.61]
    best = _select(_history(dev, held), ["rte"], "rte").best
    assert (best["step"], best["score"], best["selection_score"]) == (30, 0.55, 0.66)
    assert best["score"] != max(dev)
    # On dev (the paper's): the best dev score is the selected and the reported one.
    paper = _select(_history(dev, None), ["rte"], "rte").best
    assert (paper["step"], paper["score"], run_record.selection_score(paper)) == (20, 0.70, 0.70)
    assert "selection_score" not in paper
    # A tie keeps the earlier evaluation.
    assert _select(_history([0.5, 0.9], [0.6, 0.6]), ["rte"], "rte").best["step"] == 10


def test_each_task_and_mtl_all_select_on_their_own_holdout_scores():
    history = [{"step": s, "epoch": s / 10, "probabilities": {},
                "metrics": {"rte": {"accuracy": d1}, "sst2": {"accuracy": d2}},
                "selection_metrics": {"rte": {"accuracy": h1}, "sst2": {"accuracy": h2}}}
               for s, d1, d2, h1, h2 in ((10, 0.70, 0.80, 0.60, 0.90), (20, 0.60, 0.90, 0.70, 0.80))]
    pair = _select(history, ["rte", "sst2"], "rte")
    assert pair.best["step"] == 20 and pair.best_by_task["sst2"]["step"] == 10
    assert pair.best_by_task["sst2"]["score"] == 0.80  # dev at its held-out best
    everything = _select(history, ["rte", "sst2"], None)  # means: 0.75 then 0.75: the earlier
    assert everything.best["step"] == 10 and everything.best["selection_score"] == pytest.approx(0.75)


def test_folder_identity_and_plan(tmp_path, glue_dir):
    default = stilts_config("rte", None, {"output_dir": str(tmp_path)})
    assert "select_on" not in default.identity() and "holdout_fraction" not in default.identity()
    held = stilts_config("rte", None, {**HOLDOUT, "output_dir": str(tmp_path)})
    assert held.name == "rte__select-holdout" and held.identity()["holdout_fraction"] == 0.1
    other = mtl_config("rte", ["mrpc"], {**HOLDOUT, "holdout_fraction": 0.2, "max_train_examples": 300})
    assert other.name == "rte--mrpc__n-300_select-holdout_ho-0.2"
    assert stilts_config("rte", None, {"holdout_fraction": 0.2}).holdout_fraction is None
    from mtlvsift.train.plan import make_plan

    plan = make_plan(stilts_config("rte", None, {**HOLDOUT, "data_dir": str(glue_dir),
                                                 "output_dir": str(tmp_path)}))
    assert (plan["holdout_rows"], plan["train_sizes"], plan["available_train_sizes"]) == ([249], [2241], [2490])


@pytest.fixture
def mirrored_glue(tmp_path) -> Path:
    """The tiny GLUE folder whose RTE dev set is the held-out part (at 0.25) with every label
    flipped: any model's dev accuracy is 1 - its held-out accuracy, so the held-out best is the
    dev worst."""
    root = write_tiny_glue(tmp_path / "glue", n_train=96)
    lines = (root / "RTE" / "train.tsv").read_text().splitlines()
    labels = [line.split("\t")[-1] for line in lines[1:]]
    names = get_task("rte").label_names  # the label ids the run carves by
    held = carve(np.asarray([names.index(label) for label in labels]), 0.25, "rte")
    flip = {"entailment": "not_entailment", "not_entailment": "entailment"}
    rows = [lines[1 + i].rsplit("\t", 1) for i in held]
    (root / "RTE" / "dev.tsv").write_text("\n".join([lines[0], *(f"{a}\t{flip[b]}" for a, b in rows)]) + "\n")
    return root


def test_a_holdout_run_never_trains_on_the_held_out_rows(monkeypatch, tmp_path, tiny_model, mirrored_glue):
    """A 2-epoch run: every trained row id is a training row, every training row is trained, no
    held-out row ever is; the selected step is the argmax of the held-out scores and the reported
    score the dev score there, which (dev mirrors the held-out part) is not the best dev score."""
    from mtlvsift.train import loop
    from mtlvsift.train.batches.loader import MixedTaskDataset

    seen, prepared = [], []
    real_items, real_prepare = MixedTaskDataset.__getitems__, loop.prepare_task_data
    monkeypatch.setattr(MixedTaskDataset, "__getitems__",
                        lambda self, rows: seen.append(np.asarray(rows).copy()) or real_items(self, rows))
    monkeypatch.setattr(loop, "prepare_task_data",
                        lambda *a, **k: prepared.append(real_prepare(*a, **k)) or prepared[-1])
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "rte", "--select-on", "holdout", "--holdout-fraction", 0.25,
                                "--eval-every", 0.25, *tiny_args(tiny_model, mirrored_glue, out), "--lr", LR])
    data = prepared[0][0]
    trained = {int(data.train_rows[i]) for rows in seen for i in rows[:, 1]}
    assert len(data.holdout_rows) == 24 and trained == set(data.train_rows.tolist())
    assert not trained & set(data.holdout_rows.tolist())
    record = read_result(out, "single", "rte__select-holdout_ho-0.25")
    assert record["selection"] == {"split": "holdout", "fraction": 0.25, "rows": {"rte": 24}}
    assert record["train_sizes"] == {"rte": 72} and record["available_train_sizes"] == {"rte": 96}
    held = [h["selection_metrics"]["rte"]["accuracy"] for h in record["history"]]
    dev = [h["metrics"]["rte"]["accuracy"] for h in record["history"]]
    assert len(held) == 8 and len(set(held)) > 1  # the run learned something to select on
    assert dev == pytest.approx([1 - h for h in held])
    at = int(np.argmax(held))
    best = record["best"]
    assert best["step"] == record["history"][at]["step"] and best["selection_score"] == held[at]
    assert best["score"] == dev[at] and best["score"] < max(dev)
    assert run_record.read_record(run_dir(out, "single", "rte__select-holdout_ho-0.25") / "result.json").selected_on == "holdout"


def test_compare_reports_each_selection_mode_apart(tmp_path):
    for seed in (0, 1, 2):
        for variant, holdout in (("", None), ("select-holdout", 0.1)):
            kind = dict(variant=variant, holdout=holdout)
            write_record(tmp_path, "single", "rte", [], seed, 0.6 + seed / 100, **kind)
            write_record(tmp_path, "stilts", "rte", ["mrpc"], seed, 0.65 + seed / 100, **kind)
            write_record(tmp_path, "mtl", "rte", ["mrpc"], seed, 0.7 + seed / 100,
                         task_scores={"rte": 0.7 + seed / 100, "mrpc": 0.85}, **kind)
    result = CliRunner().invoke(load_script("compare").main, ["--outputs", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "Selection: dev (the paper's)" in text and "Selection: held-out 10% of training" in text
    report = tmp_path / "report"
    held = report / "distilroberta-base__select-holdout"
    assert "Selection: held-out 10% of training" in (held / "report.md").read_text()
    assert "Selection: dev (the paper's)" in (report / "distilroberta-base" / "report.md").read_text()
    summary = json.loads((held / "summary.json").read_text())
    assert summary["selection"] == {"split": "holdout", "fractions": [0.1]}
    cell = next(c for c in summary["cells"] if c["target"] == "rte")
    assert (cell["n_mtl"], cell["n_stilts"], cell["mtl_mean"], cell["stilts_mean"]) == (3, 3, 71.0, 66.0)
    # The runs a report lacks are asked for in its own selection mode.
    assert "--select-on holdout" in (held / "missing.sh").read_text()
    assert "--select-on" not in (report / "distilroberta-base" / "missing.sh").read_text()


def test_the_grid_reads_single_runs_of_its_own_selection_mode(tmp_path):
    """Every run of a holdout grid selects on the held-out part, and the STILTs start model and
    dynamic sampling's scores come from single runs that did too."""
    from helpers import grid_options, model_dir
    from mtlvsift.grid.plan import grid_runs

    runs = grid_runs(["rte", "mrpc"], [0], ["single", "stilts", "mtl"],
                     grid_options(tmp_path, select_on="holdout"))
    assert all(r.config.select_on == "holdout" and r.config.name.endswith("select-holdout") for r in runs)
    stilts = next(r for r in runs if r.method == "stilts" and r.config.target == "rte")
    assert stilts.needs == (str(model_dir(tmp_path) / "single/mrpc__select-holdout/seed-0"),)
    mtl = next(r for r in runs if r.method == "mtl")
    assert mtl.needs == tuple(str(model_dir(tmp_path) / f"single/{t}__select-holdout/seed-0")
                              for t in mtl.config.tasks)


def test_dynamic_sampling_reads_the_single_runs_selection_scores(tmp_path, tiny_model, tiny_glue):
    """Holdout single runs, then dynamic MTL on the same held-out parts: its single-task scores
    are the mean held-out scores of the single runs' selected checkpoints, not their dev scores."""
    out = tmp_path / "out"
    holdout = ["--select-on", "holdout", "--holdout-fraction", 0.25]
    for task in ("rte", "sst2"):
        run_script("train_stilts", ["--target", task, *holdout, *tiny_args(tiny_model, tiny_glue, out, epochs=1),
                                    "--support-seeds", "0"])
    run_script("train_mtl", ["--target", "rte", "--support", "sst2", *holdout, "--support-seeds", "0",
                             *tiny_args(tiny_model, tiny_glue, out, epochs=2)])
    singles = {t: read_result(out, "single", f"{t}__select-holdout_ho-0.25") for t in ("rte", "sst2")}
    mtl = run_record.read_record(run_dir(out, "mtl", "rte--sst2__select-holdout_ho-0.25") / "result.json")
    assert mtl.single_scores == {t: r["best"]["selection_score"] for t, r in singles.items()}
    assert mtl.selection == {"split": "holdout", "fraction": 0.25, "rows": {"rte": 12, "sst2": 12}}
    for task, best in mtl.best_by_task.items():
        scores = [h["selection_metrics"][task]["accuracy"] for h in mtl.history]
        assert best["selection_score"] == max(scores)
        at = mtl.history[scores.index(max(scores))]
        assert best["step"] == at["step"] and best["score"] == at["metrics"][task]["accuracy"]


def test_a_resumed_holdout_run_selects_as_an_uninterrupted_one(monkeypatch, tmp_path, tiny_model, tiny_glue):
    from helpers import stopped_at_a_checkpoint_then_resumed

    def command(out):
        return ["--target", "rte", "--select-on", "holdout", "--holdout-fraction", 0.25,
                *tiny_args(tiny_model, tiny_glue, out)]

    run_script("train_stilts", command(tmp_path / "clean"))
    stopped_at_a_checkpoint_then_resumed(monkeypatch, "train_stilts", command(tmp_path / "resumed"),
                                         "after_checkpoint:oserror:2")
    clean, resumed = (read_result(tmp_path / n, "single", "rte__select-holdout_ho-0.25") for n in ("clean", "resumed"))
    for key in ("history", "best", "best_by_task", "selection"):
        assert clean[key] == resumed[key], key
    assert all("selection_metrics" in h for h in clean["history"])


@pytest.mark.parametrize("change, message", [
    (lambda r: r["selection"].update(split="test"), "'selection.split' is 'test'"),
    (lambda r: r["selection"].update(fraction=1.5), "'selection.fraction' is 1.5"),
    (lambda r: r["best"].pop("selection_score"), "'best.selection_score' is missing"),
    (lambda r: r["best_by_task"]["mrpc"].update(selection_score=85), "'best_by_task.mrpc.selection_score' is 85"),
])
def test_a_holdout_record_is_checked_when_read(tmp_path, change, message):
    path = write_record(tmp_path, "mtl", "rte", ["mrpc"], 0, 0.7, variant="select-holdout", holdout=0.1)
    record = run_record.read_record(path)
    assert (record.selected_on, record.score, record.selection_score) == ("holdout", 0.7, 0.71)
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(run_record.InvalidRecord, match=message.replace(".", r"\.")):
        run_record.read_record(path)


def test_a_record_without_selection_selected_on_dev(tmp_path):
    path = write_record(tmp_path, "single", "rte", [], 0, 0.6)
    raw = json.loads(path.read_text())
    raw.pop("selection")
    path.write_text(json.dumps(raw))
    record = run_record.read_record(path)
    assert (record.selected_on, record.selection_score, record.score) == ("dev", 0.6, 0.6)

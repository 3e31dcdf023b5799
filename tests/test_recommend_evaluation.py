"""How good recommend.py's advice was: Spearman and regret@1 of saved rankings against the STILTs
gains of a synthetic tree with planted scores, equal to values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import load_script
from mtlvsift.recommend.evaluation import evaluate, load_rankings, ranking_path
from mtlvsift.run_folder import model_slug
from synthetic import DEFAULT_MODEL, write_record

main = load_script("compare").main

# Measured STILTs gains (points) for RTE: single 60.0; STILTs from MRPC 62, SST-2 61, CoLA 59, STS-B 65.
SINGLE = 0.60
STILTS = {"mrpc": 0.62, "sst2": 0.61, "cola": 0.59, "stsb": 0.65}
# Planted LogME gains: order mrpc > sst2 > stsb > cola; measured order stsb > mrpc > sst2 > cola.
LOGME_GAINS = {"mrpc": 0.030, "sst2": 0.020, "stsb": 0.010, "cola": -0.005}


def ranking(target: str, gains: dict[str, float | None]) -> dict:
    return {"target": target, "model": DEFAULT_MODEL,
            "candidates": [{"support": s, "logme_gain": g} for s, g in gains.items()]}


def test_spearman_and_regret_equal_the_hand_computed_values():
    measured = {"rte": {s: (v - SINGLE) * 100 for s, v in STILTS.items()}}
    result = evaluate({"rte": LOGME_GAINS}, measured)["targets"]["rte"]
    # Ranks by LogME (mrpc 4, sst2 3, stsb 2, cola 1) vs measured (stsb 4, mrpc 3, sst2 2, cola 1):
    # d = (1, 1, -2, 0), sum d^2 = 6, rho = 1 - 6 * 6 / (4 * 15) = 0.4.
    assert result["spearman"] == pytest.approx(0.4)
    # Ranked first: MRPC (gain 2.0); best measured: STS-B (gain 5.0): regret 3.0 points.
    assert (result["top_ranked"], result["best_measured"]) == ("mrpc", "stsb")
    assert result["regret_at_1"] == pytest.approx(3.0)


def test_means_over_targets_and_a_constant_side_has_no_correlation():
    predicted = {"rte": {"a": 1.0, "b": 2.0, "c": 3.0}, "mrpc": {"a": 1.0, "b": 1.0},
                 "cola": {"a": 1.0}}
    measured = {"rte": {"a": 3.0, "b": 2.0, "c": 1.0}, "mrpc": {"a": 0.5, "b": 1.5},
                "cola": {"a": 2.0}}
    result = evaluate(predicted, measured)
    assert set(result["targets"]) == {"rte", "mrpc"}  # CoLA: one common support, not evaluated
    assert result["targets"]["rte"]["spearman"] == pytest.approx(-1.0)
    assert result["targets"]["rte"]["regret_at_1"] == pytest.approx(2.0)  # a is best (3), c first (1)
    assert result["targets"]["mrpc"]["spearman"] is None  # tied LogME gains: no correlation
    assert result["mean_spearman"] == pytest.approx(-1.0)
    assert result["mean_regret_at_1"] == pytest.approx((2.0 + 1.0) / 2)  # MRPC: a first (tie), b best


def test_hostile_ranking_files_are_skipped_with_a_reason(tmp_path):
    folder = ranking_path(tmp_path, "m", "rte").parent
    folder.mkdir(parents=True)
    (folder / "rte.json").write_text(json.dumps(ranking("rte", {"mrpc": float("nan")})))
    (folder / "cola.json").write_text(json.dumps(ranking("cola", {"../../etc": 1.0})))
    (folder / "mrpc.json").write_text("[1, 2")
    (folder / "sst2.json").write_text(json.dumps(ranking("sst2", {"rte": 0.1, "cola": None})))
    rankings, warnings = load_rankings(tmp_path, "m", {"rte", "cola", "mrpc", "sst2"})
    assert rankings == {"sst2": {"rte": 0.1}}  # an unranked candidate (no single runs) is left out
    assert len(warnings) == 3 and any("finite" in w for w in warnings)


def test_compare_reports_the_recommender_on_a_tree(tmp_path):
    root = tmp_path / "outputs"
    for seed in range(3):
        write_record(root, "single", "rte", seed=seed, score=SINGLE + 0.001 * seed)
        for support, score in STILTS.items():
            write_record(root, "stilts", "rte", [support], seed=seed, score=score + 0.001 * seed)
    path = ranking_path(root, model_slug(DEFAULT_MODEL), "rte")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ranking("rte", LOGME_GAINS)))
    result = CliRunner().invoke(main, ["--outputs", str(root), "--report-dir", str(root / "report")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recommender = json.loads((root / "report" / "summary.json").read_text())["recommender"]
    assert recommender["targets"]["rte"]["spearman"] == pytest.approx(0.4)
    assert recommender["targets"]["rte"]["regret_at_1"] == pytest.approx(3.0)
    assert recommender["rankings"] == ["rte"]
    report = (root / "report" / "report.md").read_text()
    assert "## How good recommend.py's advice was" in report and "| RTE | 4 | 0.40 |" in report


def test_a_skipped_ranking_is_said_in_the_terminal_and_the_report(tmp_path):
    root = tmp_path / "outputs"
    for seed in range(3):
        write_record(root, "single", "rte", seed=seed, score=SINGLE + 0.001 * seed)
        write_record(root, "stilts", "rte", ["mrpc"], seed=seed, score=STILTS["mrpc"])
    path = ranking_path(root, model_slug(DEFAULT_MODEL), "rte")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ranking("rte", {**LOGME_GAINS, "mrpc": "1e999"})))
    result = CliRunner().invoke(main, ["--outputs", str(root), "--report-dir", str(root / "report")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "Skipped the saved ranking rte.json" in said and "not a finite number" in said
    assert "Skipped the saved ranking rte.json" in (root / "report" / "report.md").read_text()


def test_a_ranking_from_capped_single_runs_is_kept_with_their_report(tmp_path):
    """--max-train-examples 300: the ranking goes beside the n-300 report, which evaluates it;
    a ranking of the full-data runs does not leak into it."""
    from mtlvsift.recommend.advice import ranking_slug
    from mtlvsift.run_folder import report_slug

    assert ranking_slug("rte", {"model": "org/m", "max_train_examples": 300}) == "org-m__n-300"
    assert ranking_slug("rte", {"model": "org/m", "max_train_examples": 300, "data_seed": 3}) \
        == "org-m__n-300_ds-3"
    assert ranking_slug("rte", {"model": "org/m"}) == "org-m" == report_slug("org/m", "standard", "")
    root = tmp_path / "outputs"
    capped = {"max_train_examples": 300}
    for seed in range(3):
        write_record(root, "single", "rte", seed=seed, score=SINGLE + 0.001 * seed,
                     variant="n-300", options=capped)
        for support, score in STILTS.items():
            write_record(root, "stilts", "rte", [support], seed=seed, score=score + 0.001 * seed,
                         variant="n-300", options=capped)
    wrong = ranking_path(root, model_slug(DEFAULT_MODEL), "rte")  # the full-data report's place
    wrong.parent.mkdir(parents=True)
    wrong.write_text(json.dumps(ranking("rte", {s: -g for s, g in LOGME_GAINS.items()})))
    right = ranking_path(root, report_slug(DEFAULT_MODEL, "standard", "n-300"), "rte")
    right.parent.mkdir(parents=True)
    right.write_text(json.dumps(ranking("rte", LOGME_GAINS)))
    result = CliRunner().invoke(main, ["--outputs", str(root), "--report-dir", str(root / "report")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recommender = json.loads((root / "report" / "summary.json").read_text())["recommender"]
    assert recommender["targets"]["rte"]["spearman"] == pytest.approx(0.4)

"""The numbers of the report, each recomputed here independently of mtlvsift.report.stats."""

from __future__ import annotations

import json
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ttest_ind
from synthetic import paper_like_tree, write_record

from mtlvsift.run_index import discover
from mtlvsift.run_record import RunRecord
from mtlvsift.report.stats import analyze
from mtlvsift.report.tables import table1, table2
from mtlvsift.tasks import GLUE_TASKS

MODEL = "distilroberta-base"


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    """The paper's full grid: 9 single, 72 STILTs, 72 MTL, 1 MTL_All, 5 seeds each."""
    root = tmp_path_factory.mktemp("full") / "outputs"
    assert paper_like_tree(root) == (9 + 72 + 72 + 1) * 5
    return root


def raw_scores(root: Path) -> dict[tuple, list[float]]:
    """Seed scores straight from the JSON files: (method, target, support) -> scores."""
    scores: dict[tuple, list[float]] = defaultdict(list)
    for path in sorted(root.rglob("result.json")):
        raw = json.loads(path.read_text())
        if raw["variant"]:
            continue
        if raw["method"] == "mtl_all":
            for task, best in raw["best_by_task"].items():
                scores[("mtl_all", task, raw["sampling"])].append(best["score"])
        else:
            key = (raw["method"], raw["target"], tuple(raw["support"]))
            scores[key].append(raw["best"]["score"])
    return scores


def test_full_grid_t_p_colours_and_heuristic_recomputed(full_tree):
    raw = raw_scores(full_tree)
    analysis = analyze(discover(full_tree).records, MODEL, alpha=0.1)
    assert len(analysis.cells) == 72
    correct = total = 0
    for (target, support), cell in analysis.cells.items():
        mtl, stilts = raw[("mtl", target, (support,))], raw[("stilts", target, (support,))]
        expected = ttest_ind(mtl, stilts, equal_var=True)
        assert cell.t == pytest.approx(expected.statistic, rel=1e-12)
        assert cell.p == pytest.approx(expected.pvalue, rel=1e-12)
        assert cell.diff == pytest.approx((np.mean(mtl) - np.mean(stilts)) * 100)
        significant = expected.pvalue < 0.1
        winner = "mtl" if np.mean(mtl) > np.mean(stilts) else "stilts"
        colour = winner if significant else None
        assert (cell.significant, cell.better) == (significant, colour)
        sizes = GLUE_TASKS[target].train_size, GLUE_TASKS[support].train_size
        prediction = "mtl" if sizes[0] < sizes[1] else "stilts"
        assert cell.heuristic == prediction
        if significant:
            total += 1
            correct += prediction == colour
    assert (analysis.heuristic.correct, analysis.heuristic.total) == (correct, total)
    assert analysis.heuristic.phrase() == (
        f"predicts {correct}/{total} significant cells, {100 * correct / total:.1f}%")
    # The synthetic tree follows the paper's pattern: most significant cells agree.
    assert total > 36 and correct / total > 0.85
    assert analysis.tasks == list(GLUE_TASKS)  # descending training size


def test_welch_option_uses_unequal_variances(full_tree):
    raw = raw_scores(full_tree)
    cell = analyze(discover(full_tree).records, MODEL, welch=True).cell("rte", "mnli")
    expected = ttest_ind(raw[("mtl", "rte", ("mnli",))], raw[("stilts", "rte", ("mnli",))],
                         equal_var=False)
    assert (cell.t, cell.p) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)


def test_table1_averages_and_oracle_recomputed(full_tree):
    raw = raw_scores(full_tree)
    analysis = analyze(discover(full_tree).records, MODEL)
    table = table1(analysis)
    rows = {row.label: row.values for row in table.rows}
    assert list(rows) == ["Single task", "MTL_All (size)", "Avg. STILTs", "Avg. MTL",
                          "Size heuristic", "Pairwise oracle"]
    tasks = list(GLUE_TASKS)
    assert table.columns == [GLUE_TASKS[t].display for t in tasks] + ["Mean"]
    expected = defaultdict(list)
    for j, target in enumerate(tasks):
        means = {(m, s): 100 * np.mean(raw[(m, target, (s,))])
                 for m in ("mtl", "stilts") for s in tasks if s != target}
        supports = [s for s in tasks if s != target]
        pick = {s: "mtl" if GLUE_TASKS[target].train_size < GLUE_TASKS[s].train_size
                else "stilts" for s in supports}
        expected["Single task"].append(100 * np.mean(raw[("single", target, ())]))
        expected["MTL_All (size)"].append(100 * np.mean(raw[("mtl_all", target, "size")]))
        expected["Avg. STILTs"].append(np.mean([means[("stilts", s)] for s in supports]))
        expected["Avg. MTL"].append(np.mean([means[("mtl", s)] for s in supports]))
        expected["Size heuristic"].append(np.mean([means[(pick[s], s)] for s in supports]))
        expected["Pairwise oracle"].append(max(means.values()))
    for label, values in expected.items():
        assert rows[label][:-1] == pytest.approx(values), label
        assert rows[label][-1] == pytest.approx(np.mean(values)), label  # the Mean column
    best = table.best()
    for j in range(len(table.columns)):
        column = [rows[label][j] for label in rows]
        top = {i for i, v in enumerate(column) if v == max(column)}
        assert {i for i, jj in best if jj == j} == top
    # The oracle is the best pairwise number by construction.
    assert all(rows["Pairwise oracle"][j] >= rows["Avg. MTL"][j] for j in range(len(tasks)))
    second = {row.label: row for row in table2(analysis).rows}
    assert second["RTE"].values[2] == pytest.approx(
        max(100 * np.mean(raw[("mtl", "rte", (s,))]) for s in tasks if s != "rte"))


def test_symmetric_mtl_cell_comes_from_best_by_task(tmp_path):
    for seed, (rte, mnli) in enumerate([(0.70, 0.81), (0.72, 0.83), (0.69, 0.80)]):
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, rte,
                     task_scores={"rte": rte, "mnli": mnli})
        for target, support, score in (("rte", "mnli", 0.65), ("mnli", "rte", 0.84)):
            write_record(tmp_path, "stilts", target, [support], seed, score + seed / 100)
    analysis = analyze(discover(tmp_path).records, MODEL)
    cell = analysis.cell("mnli", "rte")
    assert cell.mtl.symmetric and cell.mtl.scores == [0.81, 0.83, 0.80]
    expected = ttest_ind([0.81, 0.83, 0.80], [0.84, 0.85, 0.86])
    assert (cell.t, cell.p) == pytest.approx((expected.statistic, expected.pvalue))
    assert not analysis.cell("rte", "mnli").mtl.symmetric
    # A run with that exact target takes precedence over the symmetric scores.
    for seed in range(3):
        write_record(tmp_path, "mtl", "mnli", ["rte"], seed, 0.90,
                     task_scores={"mnli": 0.90, "rte": 0.5})
    cell = analyze(discover(tmp_path).records, MODEL).cell("mnli", "rte")
    assert not cell.mtl.symmetric and cell.mtl.scores == [0.90] * 3


def test_one_seed_has_no_test_and_is_never_significant(tmp_path):
    write_record(tmp_path, "mtl", "rte", ["mnli"], 0, 0.99)
    write_record(tmp_path, "stilts", "rte", ["mnli"], 0, 0.10)
    cell = analyze(discover(tmp_path).records, MODEL).cell("rte", "mnli")
    assert cell.diff == pytest.approx(89.0)
    assert (cell.t, cell.p, cell.significant, cell.better) == (None, None, False, None)
    assert cell.heuristic_correct is None


def test_variants_and_size_experiments_stay_out_of_the_matrix_an_mtl_configuration_has_its_own(tmp_path):
    for seed in range(2):
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.70 + seed / 100)
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.66 + seed / 100)
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.10, variant="sampling-size",
                     sampling="size")
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.20, variant="tf-0.5_sr-2",
                     target_fraction=0.5, support_ratio=2.0)
        write_record(tmp_path, "mtl", "rte", ["mnli", "qnli"], seed, 0.30)
    analysis = analyze(discover(tmp_path).records, MODEL)
    assert sorted(analysis.cells) == [("mnli", "rte"), ("rte", "mnli")]
    assert not analysis.cell("mnli", "rte").complete  # MTL's symmetric side only
    assert analysis.cell("rte", "mnli").mtl.scores == [0.70, 0.71]
    assert analysis.cell("rte", "mnli").diff == pytest.approx(4.0)
    assert [g.support_ratio for g in analysis.size_groups] == [2.0]
    assert sorted(g.describe() for g in analysis.others) == ["mtl rte--mnli--qnli (distilroberta-base)"]
    # An MTL configuration (here size sampling) is a matrix of its own, against the same STILTs runs.
    sized = analyze(discover(tmp_path).records, MODEL, mtl="sampling-size")
    assert sized.cell("rte", "mnli").mtl.scores == [0.10, 0.10] and not sized.others
    assert sized.cell("rte", "mnli").stilts.scores == analysis.cell("rte", "mnli").stilts.scores
    assert sized.key.label() == "MTL sampling-size" and not sized.size_groups


def test_heuristic_uses_the_sizes_the_runs_used(tmp_path):
    capped = {"rte": 2490, "mnli": 1000}  # e.g. --max-train-examples 1000
    for seed in range(2):
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.7, train_sizes=capped)
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.7, train_sizes={"rte": 2490})
    cell = analyze(discover(tmp_path).records, MODEL).cell("rte", "mnli")
    assert (cell.target_size, cell.support_size, cell.heuristic) == (2490, 1000, "stilts")


def test_mtl_all_rows_per_sampling(tmp_path):
    for seed in range(2):
        for sampling, shift in (("size", 0.0), ("uniform", 0.05)):
            write_record(tmp_path, "mtl_all", None, (), seed, None, sampling=sampling,
                         variant="" if sampling == "size" else "sampling-uniform",
                         task_scores={"rte": 0.6 + shift + seed / 100, "mnli": 0.8 + shift})
    rows = {r.label: r.values for r in table1(analyze(discover(tmp_path).records, MODEL)).rows}
    assert rows["MTL_All (size, RTE+MNLI)"] == pytest.approx([80.0, 60.5, 70.25])  # MNLI, RTE, Mean
    assert rows["MTL_All (uniform, RTE+MNLI)"] == pytest.approx([85.0, 65.5, 75.25])


def _record(method: str, target: str, support: tuple, seed: int, score: float,
            sizes: dict[str, int]) -> RunRecord:
    best = {"task": target, "metric": "accuracy", "score": score}
    return RunRecord(path=Path(f"/{method}/{seed}"), method=method, name="", variant="", target=target,
                     support=support, tasks=(target, *support), seed=seed, model=MODEL,
                     protocol="standard", sampling=None, batching=None, train_sizes=sizes,
                     available_train_sizes=sizes, size_experiment={}, init_model=None,
                     start_model=None, single_scores=None, data_fingerprints=None,
                     single_scores_from=None, config={}, baselines=None, best=best,
                     best_by_task={target: best}, history=[], probabilities=None,
                     batches_per_epoch=[], timing={}, versions={})


scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(mtl=scores, stilts=scores, sizes=st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)),
       alpha=st.sampled_from([0.01, 0.05, 0.1, 0.2]), welch=st.booleans())
def test_any_cell_matches_scipy_and_the_rule(mtl, stilts, sizes, alpha, welch):
    train = {"rte": sizes[0], "mnli": sizes[1]}
    records = [_record("mtl", "rte", ("mnli",), i, s, train) for i, s in enumerate(mtl)]
    records += [_record("stilts", "rte", ("mnli",), i, s, train) for i, s in enumerate(stilts)]
    cell = analyze(records, MODEL, alpha=alpha, welch=welch).cell("rte", "mnli")
    rule = "mtl" if sizes[0] < sizes[1] else "stilts" if sizes[0] > sizes[1] else None  # tie
    assert (cell.heuristic, cell.size_tie) == (rule, rule is None)
    assert cell.diff == pytest.approx(100 * (statistics.fmean(mtl) - statistics.fmean(stilts)))
    constant = statistics.pvariance(mtl) == 0 and statistics.pvariance(stilts) == 0
    if len(mtl) < 3 or len(stilts) < 3 or constant:  # degenerate: no p value, open, a reason
        assert cell.p is None and not cell.significant and cell.verdict == "open"
        assert cell.stats.reason
        return
    with warnings.catch_warnings():  # nearly constant samples
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = ttest_ind(mtl, stilts, equal_var=not welch)
    assert cell.p == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert cell.significant == (expected.pvalue < alpha)
    if cell.significant:
        winner = "mtl" if statistics.fmean(mtl) > statistics.fmean(stilts) else "stilts"
        assert cell.better == winner


def test_expected_seeds_are_those_seen_or_the_papers_five():
    from mtlvsift.report.stats import expected_seeds

    assert expected_seeds({0, 1, 2}) == [0, 1, 2]
    assert expected_seeds({7}) == [0, 1, 2, 3, 4, 7]  # one seed cannot be tested

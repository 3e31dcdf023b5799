"""The size rule where sizes tie (issue 25, finding 2): in a capped experiment every task trains
on the same number of rows, so no cell is a prediction of the rule; and recommend compares the
two tasks' sizes alike (both as trained, or both full), saying which."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers import load_script
from synthetic import write_record

main = load_script("compare").main
FULL = {"rte": 2490, "wnli": 635}  # what a capped run records as available
CAPPED = {"variant": "n-200", "train_sizes": {"rte": 200, "wnli": 200},
          "options": {"max_train_examples": 200}, "available_sizes": FULL}


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def flat(text: str) -> str:
    return " ".join(text.split())


def capped_pair(root: Path) -> None:
    """RTE <- WNLI with every task capped at 200 rows, 3 seeds: MTL clearly better."""
    for seed in range(3):
        write_record(root, "mtl", "rte", ["wnli"], seed, 0.60 + seed / 1000, **CAPPED)
        write_record(root, "stilts", "rte", ["wnli"], seed, 0.52 + seed / 1000, **CAPPED,
                     start_model={"run": "single/wnli__n-200", "seed": 0, "score": 0.5,
                                  "seeds": [0, 1, 2]})


def test_a_size_tie_is_no_prediction_and_is_shown_as_a_tie(tmp_path):
    capped_pair(tmp_path)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "report"  # the one report: n-200
    summary = json.loads((folder / "summary.json").read_text())
    cell = next(c for c in summary["cells"] if (c["target"], c["support"]) == ("rte", "wnli"))
    assert cell["significant"] and cell["better"] == "mtl"
    # Before: heuristic "stilts" (200 is not smaller than 200), counted as a wrong prediction.
    assert (cell["heuristic"], cell["heuristic_correct"], cell["size_tie"]) == (None, None, True)
    assert summary["heuristic"]["total"] == 0 and summary["heuristic"]["ties"] == 1
    assert all(s["total"] == 0 for s in summary["heuristic_by_correction"].values())
    assert summary["heuristic_by_sign"]["total"] == 0
    out = flat(result.stdout)
    assert "no significant cells to predict yet (1 significant cell is a size tie" in out
    assert "=: a size tie" in out and "wrong in" not in out
    report = flat((folder / "report.md").read_text())
    assert "1 significant cell is a size tie" in report and "| tie |" in report
    assert "Heuristic wrong in" not in report


def test_recommend_with_only_a_capped_target_run_compares_full_sizes(tmp_path):
    for seed in range(3):
        write_record(tmp_path, "single", "rte", [], seed, 0.55, variant="n-200",
                     train_sizes={"rte": 200}, options={"max_train_examples": 200},
                     available_sizes={"rte": 2490})
    result = run("recommend", "--target", "rte", "--support", "wnli", "--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    # Before: "pairwise MTL (the target's 200 training examples are smaller than ... 635 ...)".
    assert out.startswith("Recommendation: STILTs (the target's 2,490 training examples are "
                          "larger than the supporting task's 635; both full training sets")


def test_recommend_on_a_capped_pair_says_tie_and_what_the_full_sizes_say(tmp_path):
    capped_pair(tmp_path)
    result = run("recommend", "--target", "rte", "--support", "wnli", "--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert out.startswith("Recommendation: none: the size rule does not choose (the target's "
                          "200 training examples equal the supporting task's 200; both as "
                          "trained in the runs of distilroberta-base (n-200))")
    assert "With both full training sets (2,490 vs 635): STILTs." in out
    assert "This pair was run" in out  # the measured cell is still shown


def test_recommend_result_says_which_sizes(tmp_path):
    import io

    from rich.console import Console

    from mtlvsift.report.compare import recommend

    capped_pair(tmp_path)
    quiet = Console(file=io.StringIO())
    tie = recommend(tmp_path, "rte", "wnli", console=quiet)
    assert (tie["pick"], tie["sizes"], tie["target_size"], tie["support_size"]) == (
        None, "as_trained", 200, 200)
    assert tie["full_sizes"] == {"target_size": 2490, "support_size": 635, "pick": "stilts"}
    full = recommend(tmp_path / "none", "rte", "wnli", console=quiet)
    assert (full["pick"], full["sizes"]) == ("stilts", "full")
    given = recommend(tmp_path, target_size=10, support_size=20, console=quiet)
    assert (given["pick"], given["sizes"]) == ("mtl", "given")

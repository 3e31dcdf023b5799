"""compare.py over variants: one report per data variant (a mini experiment made with
--max-train-examples), the seeds in use, commands from the recorded options, baselines, valid
markdown tables, no placeholder figures, and recommend with the sizes the runs trained on."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import load_script
from synthetic import write_record

from mtlvsift.report.text import FIGURE1_EMPTY, FIGURE2_EMPTY
from mtlvsift.report.variants import split_variant

main = load_script("compare").main
MODEL = "distilroberta-base"
MINI = {"max_train_examples": 300, "epochs": 2, "max_seq_length": 64, "batch_size": 32,
        "data_dir": "/data/glue dir"}
SIZES = {"rte": 300, "mrpc": 300}
BASELINES = {"rte": 0.527, "mrpc": 0.748}  # majority class: RTE accuracy, MRPC (acc + F1) / 2


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def mini_experiment(root: Path, mtl_all_seeds=(0, 1)) -> None:
    """RTE and MRPC, seeds 0 and 1, every run with --max-train-examples 300: singles, STILTs
    both ways, pairwise MTL, MTL_All over the two tasks. MRPC learns nothing (at its baseline);
    on RTE, STILTs from MRPC is clearly better than MTL."""
    common = dict(variant="n-300", train_sizes=SIZES, baselines=BASELINES)
    pair = dict(common, options={**MINI, "support_seeds": [0, 1]})
    for seed in (0, 1):
        jitter = seed / 1000
        write_record(root, "single", "rte", [], seed, 0.55 + jitter, **common, options=MINI)
        write_record(root, "single", "mrpc", [], seed, 0.748, **common, options=MINI)
        write_record(root, "stilts", "rte", ["mrpc"], seed, 0.62 + jitter, **pair)
        write_record(root, "stilts", "mrpc", ["rte"], seed, 0.749 - jitter, **pair)
        write_record(root, "mtl", "rte", ["mrpc"], seed, 0.53 + jitter,
                     task_scores={"rte": 0.53 + jitter, "mrpc": 0.747 + jitter}, **pair)
    for seed in mtl_all_seeds:
        write_record(root, "mtl_all", None, (), seed, None, tasks=["rte", "mrpc"],
                     task_scores={"rte": 0.54, "mrpc": 0.748}, train_sizes=SIZES,
                     baselines=BASELINES, variant="tasks-rte+mrpc_n-300",
                     options=MINI)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text (blocks of lines starting with '|'), as rows of cells;
    asserts that each is a valid table: a header, a separator, rows of the header's width."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            rows = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in block]
            assert all(row.endswith("|") for row in block), block
            assert len(rows) >= 3, f"a table without rows: {block}"
            assert all(re.fullmatch(r":?-{3,}:?", c) for c in rows[1]), block[1]
            assert {len(r) for r in rows} == {len(rows[0])}, f"uneven table: {block}"
            tables.append(rows)
            block = []
    return tables


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The mini experiment next to default runs of the same tasks (five seeds, full size)."""
    root = tmp_path_factory.mktemp("mixed") / "out"
    mini_experiment(root, mtl_all_seeds=(0,))
    for seed in range(5):
        write_record(root, "single", "rte", [], seed, 0.66 + seed / 500)
        write_record(root, "stilts", "rte", ["mrpc"], seed, 0.70 + seed / 500)
        write_record(root, "mtl", "rte", ["mrpc"], seed, 0.72 + seed / 500)
    result = run("--outputs", root)
    assert result.exit_code == 0, result.output
    return root, result


def test_split_variant_keeps_the_data_apart():
    assert split_variant("tasks-rte+my_task_n-300_ds-1") == ("n-300_ds-1", "tasks-rte+my_task")
    assert split_variant("sampling-size") == ("", "sampling-size")
    assert split_variant("n-2000_tf-0.5_sr-2") == ("n-2000", "tf-0.5_sr-2")
    assert split_variant("") == ("", "")


def test_the_mini_experiment_has_its_own_report(mixed):
    root, result = mixed
    assert "MTL vs STILTs · distilroberta-base · n-300" in result.stdout
    assert "MTL vs STILTs · distilroberta-base\n" in result.stdout.replace("─", "").replace(
        " \n", "\n")
    index = json.loads((root / "report" / "summary.json").read_text())["models"]
    assert {v["report_dir"] for v in index.values()} == {MODEL, f"{MODEL}__n-300"}
    mini = json.loads((root / "report" / f"{MODEL}__n-300" / "summary.json").read_text())
    assert mini["variant"] == "n-300" and mini["seeds"] == [0, 1]
    cells = {(c["target"], c["support"]): c for c in mini["cells"]}
    rte = cells[("rte", "mrpc")]
    assert (rte["n_mtl"], rte["n_stilts"], rte["target_size"], rte["support_size"]) == (2, 2, 300, 300)
    # Two seeds a side: no p value, open, with the reason (issue 20: two equal seeds gave p = 0).
    assert rte["p"] is None and not rte["significant"] and rte["verdict"] == "open"
    assert "fewer than 3 seeds (2 MTL, 2 STILTs)" in rte["verdict_reason"]
    assert len(rte["mtl_scores"]) == len(rte["stilts_scores"]) == 2
    assert rte["heuristic"] is None and rte["size_tie"] and mini["heuristic"]["total"] == 0
    rows = {r["label"]: r for r in mini["tables"]["table1"]["rows"]}
    assert "MTL_All (size, RTE+MRPC)" in rows
    # The default runs keep their own report: five seeds, full sizes, nothing of the mini one.
    default = json.loads((root / "report" / MODEL / "summary.json").read_text())
    cell = next(c for c in default["cells"] if (c["target"], c["support"]) == ("rte", "mrpc"))
    assert (cell["n_mtl"], cell["n_stilts"], cell["target_size"]) == (5, 5, 2490)
    assert default["seeds"] == [0, 1, 2, 3, 4] and default["variant"] == ""
    assert not any("MTL_All" in r["label"] for r in default["tables"]["table1"]["rows"])


def test_report_md_states_the_seeds_in_use_and_parses(mixed):
    root, _ = mixed
    report = (root / "report" / f"{MODEL}__n-300" / "report.md").read_text()
    assert report.startswith("# MTL vs STILTs: distilroberta-base (n-300)")
    assert "seeds 0, 1 (2 per cell)" in report
    assert "0, 1, 2, 3, 4" not in report and "2, 3" not in report
    tables = markdown_tables(report)
    matrix = next(t for t in tables if t[0][0] == "target \\ support")
    assert [r[0] for r in matrix[2:]] == ["**MRPC**", "**RTE**"]
    # RTE <- MRPC; MRPC <- RTE, at the baseline; both size ties (300 rows each)
    assert matrix[3][1].startswith("-") and matrix[2][2].split()[1:] == ["~", "="]
    assert any(r[0] == "MTL_All (size, RTE+MRPC)" for t in tables for r in t)
    for folder in (root / "report").iterdir():
        if folder.is_dir():
            markdown_tables((folder / "report.md").read_text())
    markdown_tables((root / "report" / "report.md").read_text())


def test_missing_runs_use_the_seeds_in_use_and_the_recorded_options(mixed):
    root, result = mixed
    script = (root / "report" / f"{MODEL}__n-300" / "missing.sh").read_text().splitlines()
    commands = [line for line in script if line.startswith(("accelerate", "for "))]
    out = shlex.quote(str(root))
    assert commands == [  # MTL_All lacks seed 1, nothing else
        "accelerate launch --quiet scripts/train_mtl_all.py --epochs 2 --batch-size 32 --max-seq-length "
        "64 --data-dir '/data/glue dir' --max-train-examples 300 --tasks rte,mrpc "
        f"--output-dir {out} --seed 1"]
    assert "# MTL_All (size, RTE+MRPC): seed 1 (others done)" in script
    default = (root / "report" / MODEL / "missing.sh").read_text()
    assert "--max-train-examples" not in default  # the default runs' commands stay default
    assert (f"accelerate launch --quiet scripts/train_stilts.py --target mrpc --output-dir {out} --seed "
            "$seed; done") in default


def test_new_configurations_take_the_shared_options_and_seeds(tmp_path):
    for seed in (0, 1):
        for task in ("rte", "mrpc"):
            write_record(tmp_path, "single", task, [], seed, 0.6, variant="n-300",
                         train_sizes={task: 300}, options=MINI)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    script = (tmp_path / "report" / "missing.sh").read_text()
    out = shlex.quote(str(tmp_path))
    shared = ("--epochs 2 --batch-size 32 --max-seq-length 64 --data-dir '/data/glue dir' "
              "--max-train-examples 300")
    assert (f"for seed in 0 1; do accelerate launch --quiet scripts/train_stilts.py --target mrpc "
            f"--support rte {shared} --support-seeds '0 1' --output-dir {out} --seed $seed; "
            "done") in script.splitlines()
    assert (f"for seed in 0 1; do accelerate launch --quiet scripts/train_mtl.py --target rte "
            f"--support mrpc {shared} --support-seeds '0 1' --output-dir {out} --seed $seed; "
            "done") in script.splitlines()
    assert (f"for seed in 0 1; do accelerate launch --quiet scripts/train_mtl_all.py {shared} --tasks "
            f"mrpc,rte --output-dir {out} --seed $seed; done") in script.splitlines()
    # Nothing to draw: no figure files, one line each in report.md, and the tables still parse.
    report_dir = tmp_path / "report"
    assert not (report_dir / "figure1.png").exists() and not (report_dir / "figure2.png").exists()
    report = (report_dir / "report.md").read_text()
    assert FIGURE1_EMPTY in report and FIGURE2_EMPTY in report and "![Figure" not in report
    markdown_tables(report)
    assert "figure1.png" not in result.stdout


def test_baselines_are_shown_and_cells_at_them_marked(mixed):
    root, result = mixed
    assert "Majority-class baselines (a constant prediction, dev, points): MRPC 74.8 · RTE 52.7" \
        in result.stdout
    assert "~: both methods at the majority-class baseline: nothing learned" in result.stdout
    mini = json.loads((root / "report" / f"{MODEL}__n-300" / "summary.json").read_text())
    assert mini["task_info"]["mrpc"]["baseline"] == pytest.approx(74.8)
    cells = {(c["target"], c["support"]): c["at_baseline"] for c in mini["cells"]}
    assert cells == {("mrpc", "rte"): True, ("rte", "mrpc"): False}
    report = (root / "report" / f"{MODEL}__n-300" / "report.md").read_text()
    assert "~: both methods at the majority-class baseline (within 0.5 points)" in report
    # Records without baselines: nothing shown, no error.
    default = json.loads((root / "report" / MODEL / "summary.json").read_text())
    assert all(c["at_baseline"] is None for c in default["cells"])
    assert "baseline" not in default["task_info"]["rte"]
    assert "Majority-class" not in (root / "report" / MODEL / "report.md").read_text()


def test_figure1_is_a_real_image_when_cells_exist(mixed):
    root, _ = mixed
    folder = root / "report" / f"{MODEL}__n-300"
    assert (folder / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (folder / "figure1.png").stat().st_size > 10_000
    assert not (folder / "figure2.png").exists()
    assert FIGURE2_EMPTY in (folder / "report.md").read_text()


def test_single_runs_of_another_size_stay_with_the_default_report(tmp_path):
    """The supporting runs of a size experiment (n-<K x target size>) are no report of their own."""
    for seed in (0, 1):
        write_record(tmp_path, "mtl", "rte", ["mnli"], seed, 0.7)
        write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.6)
        write_record(tmp_path, "single", "mnli", [], seed, 0.7, variant="n-1245",
                     train_sizes={"mnli": 1245}, options={"max_train_examples": 1245})
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["variant"] == "" and len(summary["cells"]) == 2
    assert [g["variant"] for g in summary["groups"]] == ["n-1245"]  # under "Other runs"


def test_recommend_uses_the_sizes_the_runs_trained_on(tmp_path):
    mini_experiment(tmp_path)
    result = run("recommend", "--target", "rte", "--support", "mrpc", "--outputs", tmp_path)
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert ("Recommendation: none: the size rule does not choose (the target's 300 training "
            "examples equal the supporting task's 300; both as trained in the runs of "
            "distilroberta-base (n-300))") in out
    assert re.search(r"This pair was run \(distilroberta-base \(n-300\), seeds 0, 1 \(2 per cell\)\): "
                     r"MTL 53\.[01] vs STILTs 62\.[01] points \(-9\.0\), p = n/a: open \(fewer than 3 seeds "
                     r"\(2 MTL, 2 STILTs\)\)\.", out)
    given = run("recommend", "--target-size", "10", "--support-size", "20", "--outputs", tmp_path)
    assert "Recommendation: pairwise MTL" in given.stdout and "as trained" not in given.stdout


def test_a_baseline_without_a_score_is_no_baseline_and_a_bad_one_skips_the_record(tmp_path):
    from mtlvsift.run_index import discover

    good = write_record(tmp_path, "single", "stsb", [], 0, 0.8, baselines={"stsb": 0.0})
    raw = json.loads(good.read_text())
    raw["baselines"]["stsb"]["score"] = None  # a constant's correlation is undefined
    good.write_text(json.dumps(raw))
    bad = write_record(tmp_path, "single", "rte", [], 0, 0.6, baselines={"rte": 0.5})
    raw = json.loads(bad.read_text())
    raw["baselines"]["rte"]["score"] = 52.7  # points are not scores
    bad.write_text(json.dumps(raw))
    found = discover(tmp_path)
    assert [(r.target, r.baseline_scores) for r in found.records] == [("stsb", {})]
    assert len(found.warnings) == 1 and "'baselines'" in found.warnings[0]

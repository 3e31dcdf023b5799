"""scripts/compare.py end to end: terminal report, report folder, figures, models, recommend."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.image import imread
from scipy.stats import ttest_ind
from helpers import load_script
from synthetic import paper_like_tree, size_experiment_tree, write_in_progress, write_record

SUMMARY_CELL_KEYS = {"target", "support", "mtl_mean", "stilts_mean", "diff", "t", "p", "n_mtl",
                     "n_stilts", "significant", "better", "heuristic"}


main = load_script("compare").main


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """Four tasks with every method, the size experiments, a bad file and a run in progress."""
    root = tmp_path_factory.mktemp("small") / "outputs"
    paper_like_tree(root, tasks=["qnli", "sst2", "mrpc", "rte"], samplings=("size", "uniform"))
    size_experiment_tree(root, fractions=(0.1, 0.3), seeds=range(3))
    write_record(root, "stilts", "rte", ["sst2"], 2, 0.6, variant="tf-0.5",
                 target_fraction=0.5)  # a target fraction without a support ratio
    bad = root / "mtl" / "rte--qnli" / "seed-9" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema": 1, "method": "mtl", "tar')  # half-copied
    write_in_progress(root, "stilts", "rte--sst2__tf-0.5", seed=0)
    return root


@pytest.fixture(scope="module")
def small_report(small_tree, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
    result = run("--outputs", small_tree, "--report-dir", report_dir)
    assert result.exit_code == 0, result.output
    return result, report_dir


def test_terminal_report(small_report, small_tree):
    result, _ = small_report
    out = result.stdout
    assert "Figure 1: MTL - STILTs" in out and "Table 1" in out and "Table 2" in out
    assert "Size heuristic" in out and "significant cells" in out
    assert "Runs in progress" in out and "rte--sst2__tf-0.5" in out
    bad = small_tree / "mtl" / "rte--qnli" / "seed-9" / "result.json"
    assert result.stderr.count(str(bad)) == 1 and "Warning" in result.stderr
    assert "Traceback" not in result.output


def test_report_folder_and_summary(small_report, small_tree):
    _, report_dir = small_report
    names = {p.name for p in report_dir.iterdir()}
    assert {"report.md", "figure1.png", "figure2.png", "matrix_diff.csv", "matrix_p.csv",
            "cells.csv", "table1.csv", "table2.csv", "summary.json", "missing.sh"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # atomic writes leave nothing behind
    summary = json.loads((report_dir / "summary.json").read_text())
    assert len(summary["cells"]) == 12
    cells_by_key = {(c["target"], c["support"]): c for c in summary["cells"]}
    for cell in summary["cells"]:
        assert SUMMARY_CELL_KEYS <= set(cell)
    rte = cells_by_key[("rte", "qnli")]
    mtl, stilts = _seed_scores(small_tree, "mtl", "rte--qnli"), _seed_scores(small_tree, "stilts",
                                                                              "rte--qnli")
    assert len(mtl) == len(stilts) == 5
    expected = ttest_ind(mtl, stilts)
    assert (rte["t"], rte["p"]) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    assert (rte["n_mtl"], rte["n_stilts"]) == (5, 5)
    judged = [c for c in summary["cells"] if c["significant"]]
    assert judged  # a paper-like tree has significant cells: the checks below are not vacuous
    heuristic = summary["heuristic"]
    assert heuristic["total"] == len(judged)
    assert heuristic["correct"] == sum(c["better"] == c["heuristic"] for c in judged)
    assert summary["in_progress"] == ["stilts/rte--sst2__tf-0.5/seed-0"]
    report = (report_dir / "report.md").read_text()
    assert "![Figure 1](figure1.png)" in report and "## Runs in progress" in report
    assert "predicts" in report and "MTL_All (uniform, QNLI+SST-2+MRPC+RTE)" in report


def _seed_scores(root: Path, method: str, name: str) -> list[float]:
    return [json.loads(p.read_text())["best"]["score"]
            for p in sorted((root / method / name).glob("seed-[0-4]/result.json"))]


@pytest.mark.parametrize("name, min_size", [("figure1.png", (600, 600)),
                                            ("figure2.png", (500, 900))])
def test_figures_render_with_content(small_report, name, min_size):
    _, report_dir = small_report
    path = report_dir / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 10_000 < path.stat().st_size < 2_000_000
    pixels = imread(path)[..., :3]
    assert pixels.shape[0] >= min_size[0] and pixels.shape[1] >= min_size[1]
    not_white = (pixels < 0.95).any(axis=-1).mean()
    assert 0.03 < not_white < 0.9  # drawn on, not a blank or solid image
    levels = (pixels * 15).round().astype(int).reshape(-1, 3) @ np.array([256, 16, 1])
    assert len(np.unique(levels)) > 20
    if name == "figure1.png":  # both significance colours appear in a paper-like tree
        for hex_colour in ("#6baed6", "#fdae6b"):
            rgb = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
            assert (np.abs(pixels - rgb).max(axis=-1) < 0.02).mean() > 0.005, hex_colour


def test_missing_cells_give_seed_loop_commands(tmp_path):
    for seed in range(5):
        write_record(tmp_path, "single", "rte", [], seed, 0.66)
        write_record(tmp_path, "single", "mnli", [], seed, 0.84)
        if seed < 3:
            write_record(tmp_path, "stilts", "rte", ["mnli"], seed, 0.70)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0
    out = result.stdout
    output_dir = shlex.quote(str(tmp_path))
    # Options (here --output-dir, since the outputs are not ./outputs) go before --seed.
    mtl = ("for seed in 0 1 2 3 4; do accelerate launch --quiet scripts/train_mtl.py --target rte "
           f"--support mnli --output-dir {output_dir} --seed $seed; done")
    stilts = ("for seed in 3 4; do accelerate launch --quiet scripts/train_stilts.py --target rte "
              f"--support mnli --output-dir {output_dir} --seed $seed; done")
    lines = out.splitlines()
    assert f"  {mtl}" in lines, out
    assert f"  {stilts}" in lines, out
    assert out.count("scripts/train_mtl.py") == 1  # one pairwise run fills both cells
    script = (tmp_path / "report" / "missing.sh").read_text()
    assert script.splitlines().count(mtl) == 1 and script.splitlines().count(stilts) == 1
    assert "train_mtl_all.py" in script


def test_missing_command_in_default_outputs_matches_the_docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_record(Path("outputs"), "stilts", "rte", ["mnli"], 0, 0.70)
    result = run()  # --outputs defaults to ./outputs
    assert result.exit_code == 0
    assert ("for seed in 0 1 2 3 4; do accelerate launch --quiet scripts/train_mtl.py --target rte "
            "--support mnli --seed $seed; done") in result.stdout
    assert (tmp_path / "outputs" / "report" / "summary.json").exists()


def test_one_seed_is_not_available_not_significant(tmp_path):
    write_record(tmp_path, "mtl", "rte", ["mnli"], 0, 0.90)
    write_record(tmp_path, "stilts", "rte", ["mnli"], 0, 0.60)
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0
    cells = json.loads((tmp_path / "report" / "summary.json").read_text())["cells"]
    cell = next(c for c in cells if (c["target"], c["support"]) == ("rte", "mnli"))
    assert (cell["t"], cell["p"], cell["significant"], cell["better"]) == (None, None, False, None)
    assert "no significant cells" in result.stdout
    assert cell["verdict"] == "open" and "fewer than 3 seeds" in cell["verdict_reason"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert ("| RTE | MNLI | 90.0 (n=1) | 60.0 (n=1) | +30.0 | – | – | n/a | n/a | n/a | n/a | n/a "
            "| n/a | open (fewer than 3 seeds (1 MTL, 1 STILTs)) |") in report
    assert "1 of 1 cells have fewer than 3 seeds of a method: they get no p value" in report


def test_two_models_are_reported_separately_or_chosen(tmp_path):
    for model, score in (("distilroberta-base", 0.7), ("org/bert-base", 0.6)):
        for seed in range(2):
            write_record(tmp_path, "mtl", "rte", ["mnli"], seed, score + seed / 100, model=model,
                         folder=f"rte--mnli-{model.replace('/', '-')}")
            write_record(tmp_path, "stilts", "rte", ["mnli"], seed, score, model=model,
                         folder=f"rte--mnli-{model.replace('/', '-')}")
    result = run("--outputs", tmp_path)
    assert result.exit_code == 0
    assert "each is reported separately" in result.stdout
    assert "MTL vs STILTs · distilroberta-base" in result.stdout
    assert "MTL vs STILTs · org/bert-base" in result.stdout
    index = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(index["models"]) == {"distilroberta-base", "org/bert-base"}
    one = json.loads((tmp_path / "report" / "org-bert-base" / "summary.json").read_text())
    rte = next(c for c in one["cells"] if c["target"] == "rte")
    assert one["model"] == "org/bert-base" and rte["n_mtl"] == 2
    assert rte["mtl_mean"] == pytest.approx(60.5)

    chosen = run("--outputs", tmp_path, "--model", "org/bert-base", "--report-dir", tmp_path / "r")
    assert chosen.exit_code == 0 and "distilroberta-base ·" not in chosen.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["model"] == "org/bert-base"
    unknown = run("--outputs", tmp_path, "--model", "nope")
    assert unknown.exit_code == 1
    assert "Error: No runs of model 'nope'" in unknown.output and "org/bert-base" in unknown.output


def test_no_records_is_an_error_not_a_crash(tmp_path):
    result = run("--outputs", tmp_path / "nothing")
    assert result.exit_code == 1
    assert result.output.startswith("Error: No outputs folder at")
    assert "train_stilts.py" in result.output and "Traceback" not in result.output


def test_recommend_from_sizes_names_and_the_paper(tmp_path, small_tree):
    paper = run("--outputs", tmp_path / "none", "recommend", "--target-size", "2000",
                "--support-size", "50000")
    assert paper.exit_code == 0
    assert "pairwise MTL" in paper.stdout and "49/53" in paper.stdout and "92.5%" in paper.stdout
    stilts = run("recommend", "--target", "SST-2", "--support", "rte", "--outputs", tmp_path)
    assert stilts.exit_code == 0 and "Recommendation: STILTs" in stilts.stdout
    at_hand = run("recommend", "--target", "rte", "--support", "qnli", "--outputs", small_tree)
    assert at_hand.exit_code == 0
    assert "In the runs at hand" in at_hand.stdout and "This pair was run" in at_hand.stdout
    assert "49/53" not in at_hand.stdout
    missing = run("recommend", "--target", "rte")
    assert missing.exit_code == 1
    assert "Error: Give --support-size N or --support TASK" in missing.output
    unknown = run("recommend", "--target", "nosuchtask", "--support-size", "5")
    assert unknown.exit_code == 1 and "Task 'nosuchtask' is neither a GLUE task nor trained in any " \
        "run" in unknown.output and "--target-size N" in unknown.output


def test_full_9x9_tree_reports_every_cell(tmp_path):
    # Its timing is a benchmark's (bench/), not a unit test's.
    outputs = tmp_path / "outputs"
    assert paper_like_tree(outputs) == 770  # 9 single, 72 STILTs, 72 MTL, 1 MTL_All; 5 seeds
    result = run("--outputs", outputs)
    assert result.exit_code == 0
    summary = json.loads((outputs / "report" / "summary.json").read_text())
    assert len(summary["cells"]) == 72 and summary["missing"] == []


def _run_missing_sh(script: Path, tmp_path: Path) -> list[str]:
    """Run missing.sh with a stub `accelerate` that only records its arguments."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "accelerate"
    stub.write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    stub.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls)}
    done = subprocess.run(["sh", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines()


def test_record_fields_cannot_inject_commands_or_html(tmp_path):
    outputs = tmp_path / "outputs"
    write_record(outputs, "single", "rte", [], 0, 0.66)
    injected = write_record(outputs, "mtl_all", None, (), 0, None, sampling="size",
                            task_scores={"rte": 0.6, "sst2": 0.9}, folder="evil")
    raw = json.loads(injected.read_text())
    raw["sampling"] = "x\ntouch SOMEFILE\n#"
    injected.write_text(json.dumps(raw))
    html_model = "<img src=x onerror=alert(1)>"
    write_record(outputs, "single", "rte", [], 0, 0.66, model=html_model, folder="rte-html")
    result = run("--outputs", outputs, "--report-dir", tmp_path / "report")
    assert result.exit_code == 0, result.output
    warnings = result.stderr.replace("\n", "")  # rich wraps long lines
    assert str(injected) in warnings and "'sampling'" in warnings
    scripts = sorted((tmp_path / "report").rglob("missing.sh"))
    assert len(scripts) == 2  # one report per model
    for script in scripts:
        calls = _run_missing_sh(script, tmp_path)
        assert calls and all(c.startswith("launch --quiet scripts/train_") for c in calls)
    assert not (tmp_path / "SOMEFILE").exists()
    report = (tmp_path / "report" / "img-src-x-onerror-alert-1" / "report.md").read_text()
    assert "# MTL vs STILTs: &lt;img src=x onerror=alert(1)&gt;" in report
    outside_code = re.sub(r"```sh\n.*?```", "", report, flags=re.S)  # commands: shell-quoted
    assert "<img" not in outside_code and "<img" in report


def test_a_line_break_in_a_description_stays_in_its_comment(tmp_path):
    from mtlvsift.report.files import missing_script
    from mtlvsift.report.missing import MissingRun

    run_ = MissingRun("mtl_all", None, None, (0,), {"sampling": "size\ntouch SOMEFILE"},
                      label="size\ntouch SOMEFILE")
    script = tmp_path / "missing.sh"
    script.write_text(missing_script([run_], Path("outputs")))
    _run_missing_sh(script, tmp_path)
    assert not (tmp_path / "SOMEFILE").exists()


@pytest.mark.parametrize("alpha", ["nan", "inf", "-inf"])
def test_alpha_must_be_finite(tmp_path, alpha):
    write_record(tmp_path, "mtl", "rte", ["mnli"], 0, 0.90)
    result = CliRunner().invoke(main, ["--outputs", str(tmp_path), "--alpha", alpha])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Error: Invalid value for '--alpha'" in result.output
    assert not (tmp_path / "report").exists()


def test_a_report_folder_that_is_a_file_is_one_error(tmp_path):
    write_record(tmp_path, "mtl", "rte", ["mnli"], 0, 0.90)
    (tmp_path / "report").write_text("not a folder")
    result = CliRunner().invoke(main, ["--outputs", str(tmp_path)])
    assert result.exit_code == 1 and result.exc_info[0] is SystemExit
    assert "Error: Could not write the report in" in result.output and "--report-dir" in result.output


HOSTILE = "\x1b[2J\x1b]0;owned\x07\rX\u202e"  # clear screen, set the title, bell, CR, bidi override


def test_control_characters_in_records_and_folder_names_are_shown_escaped(tmp_path):
    """A start model's run and run folders' names with ESC sequences reach neither the terminal
    nor report.md nor cells.csv raw: they are shown escaped (\\x1b), and the records whose start
    model is such a run are skipped with a warning."""
    outputs = tmp_path / "outputs"
    for seed in (0, 1):  # seeds started from different (hostile) runs: not pooled, and named
        write_record(outputs, "stilts", "rte", ["mnli"], seed, 0.7,
                     start_model={"run": f"single/mnli{HOSTILE}/seed-{seed}", "seed": seed,
                                  "score": 0.8})
        write_record(outputs, "mtl", "rte", ["mnli"], seed, 0.72)
    write_record(outputs, "mtl", "rte", ["mnli"], 0, 0.7, folder=f"rte--mnli{HOSTILE}")  # seed twice
    bad = outputs / "single" / f"rte{HOSTILE}" / "seed-0" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    write_in_progress(outputs, "single", f"sst2{HOSTILE}", seed=0)
    result = run("--outputs", outputs)
    assert result.exit_code == 0, result.output
    report = outputs / "report"
    shown = {"stdout": result.stdout, "stderr": result.stderr,
             "report.md": (report / "report.md").read_text(),
             "cells.csv": (report / "cells.csv").read_text()}
    for name, text in shown.items():
        for raw in ("\x1b", "\x07", "\r", "\u202e"):
            assert raw not in text, (name, raw)
    # A start model's run holding control characters is not one a trainer writes: skipped, named.
    assert "'start_model.run'" in " ".join(shown["stderr"].split())
    assert "\\x1b[2J" in shown["report.md"]
    assert "\\x1b[2J" in shown["stderr"] and "\\x1b[2J" in shown["stdout"]  # skipped; in progress

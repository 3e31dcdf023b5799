"""bench.reproduce: the budget's sizing, the stand-in GLUE folder, the one-line error without a
GPU, and (slow) the whole reproduction at a tiny scale inside its budget."""

from __future__ import annotations

import json
import tarfile
import time

import pytest
from click.testing import CliRunner

from bench import reproduce, reproduction_data
from mtlvsift.errors import MtlvsiftError


def test_candidates_keep_every_task_down_to_the_floor_then_drop_tasks():
    cuts = reproduce.candidates(("rte", "mrpc", "stsb"), floor=0.1)
    assert cuts[0] == reproduce.Cut(("rte", "mrpc", "stsb"), 1.0, reproduce.EPOCHS[0])
    first_two = next(i for i, c in enumerate(cuts) if len(c.tasks) == 2)
    assert min(c.fraction for c in cuts[:first_two]) == 0.1
    assert cuts[-1] == reproduce.Cut(("rte", "mrpc"), reproduce.FRACTIONS[-1], 1)


def test_choose_takes_the_first_size_that_fits_else_the_smallest():
    cuts = reproduce.candidates(("rte", "mrpc", "stsb"), floor=0.1)
    price = lambda cut: len(cut.tasks) * cut.fraction * cut.epochs * 100  # noqa: E731
    cut, estimate, fits = reproduce.choose(cuts, price, seconds=30.5)
    assert (cut.tasks, cut.fraction, cut.epochs, fits) == (("rte", "mrpc", "stsb"), 0.1, 1, True)
    assert estimate == pytest.approx(30)
    assert reproduce.choose(cuts, price, seconds=1) == (cuts[-1], price(cuts[-1]), False)


def test_reproduction_glue_keeps_a_fraction_of_training_rows_and_the_first_dev_rows(tiny_glue, tmp_path):
    sizes = reproduction_data.reproduction_glue(tiny_glue, tmp_path / "glue", ("rte", "cola"), 0.5, max_dev_rows=5)
    assert sizes == {"rte": 24, "cola": 24}
    train = (tmp_path / "glue" / "RTE" / "train.tsv").read_text().splitlines()
    source = (tiny_glue / "RTE" / "train.tsv").read_text().splitlines()
    assert train[0] == source[0] and len(train) == 25  # the header + 24 rows, in the file's order
    assert [source.index(row) for row in train[1:]] == sorted(source.index(row) for row in train[1:])
    assert len((tmp_path / "glue" / "RTE" / "dev.tsv").read_text().splitlines()) == 6  # header + 5
    assert len((tmp_path / "glue" / "CoLA" / "dev.tsv").read_text().splitlines()) == 5  # no header
    assert reproduction_data.kept_rows(67_349, 0.5, reproduction_data.SST2_CAP) == 5_000
    assert reproduction_data.kept_rows(635, 0.01) == reproduction_data.MIN_ROWS
    with pytest.raises(MtlvsiftError, match="WNLI"):
        reproduction_data.reproduction_glue(tiny_glue, tmp_path / "other", ("wnli",), 1.0, None)


def test_cuda_without_a_gpu_is_one_clear_error(tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(reproduce.main, ["--device", "cuda", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --device cuda, but torch sees no GPU (use --device cpu here)."]
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # --device cpu sets it; restored after the test
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(reproduce.main, ["--device", "cpu", "--out", str(tmp_path / "mine")])
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_tiny_reproduction_fits_its_budget_and_writes_the_report(tiny_model, tiny_glue, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # --device cpu sets it; restored after the test
    out, budget = tmp_path / "reproduction", 2.5
    start = time.monotonic()
    result = CliRunner().invoke(reproduce.main, [
        "--device", "cpu", "--budget-minutes", str(budget), "--out", str(out), "--model", str(tiny_model),
        "--tasks", "rte,sst2,cola", "--data-dir", str(tiny_glue), "--batch-size", "8",
        "--max-seq-length", "32", "--max-dev-rows", "16"])
    wall = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert wall <= 60 * budget + 5  # + CliRunner's own start
    record = json.loads((out / "reproduction.json").read_text())
    assert record["wall_seconds"] <= 60 * budget
    # The estimate depends on the machine's load during the calibration: only its use is checked.
    assert record["estimate_fits"] == (record["estimate_seconds"] <= record["grid_seconds_allowed"])
    assert record["grid"]["exit_code"] == 0 and not record["grid"]["stopped_at_budget"]
    assert set(record["cut"]["tasks"]) <= {"rte", "sst2", "cola"} and len(record["cut"]["tasks"]) >= 2
    assert set(record["heuristic_by_correction"]) == {"none", "holm", "bh"}
    text = (out / "reproduction.md").read_text()
    assert "![Figure 1](figure1.png)" in text and (out / "figure1.png").stat().st_size > 1000
    assert "49/53 = 92.5%" in text and "## Table 1" in text and "## What was cut" in text
    assert "| Avg. STILTs |" in text and "| Avg. MTL |" in text
    assert record["command"].startswith("python -m bench.reproduce --device cpu --budget-minutes 2.5")
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("result.json") for n in names)
    assert not any("/best" in n or "/state/" in n for n in names)  # MTL's best-<task>/ too

"""The benchmark scripts of bench/: paper_cost's arithmetic against hand-computed numbers, the
measurement helpers, and gpu_train.py / cpu_train.py finishing on the CPU in a tiny configuration."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import REPO_ROOT

BENCH = REPO_ROOT / "bench"


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def invoke(module, args: list) -> str:
    result = CliRunner().invoke(module.main, [str(a) for a in args], catch_exceptions=True)
    if result.exit_code != 0:
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        raise AssertionError(f"{module.__name__} {args} failed ({result.exit_code}):\n{result.output}\n{tb}")
    return result.output


# --------------------------------------------------------------------------- paper_cost


def test_paper_projection_matches_hand_arithmetic():
    cost = load_bench("paper_cost")
    rates = cost.Rates({"*": 2959.0}, {"*": 4853.0})
    totals = cost.project(cost.paper_runs(), rates)
    # 45 single + 360 STILTs + 180 MTL + 5 MTL_All
    assert [totals[m]["runs"] for m in ("single", "stilts", "mtl", "mtl_all", "total")] == [45, 360, 180, 5, 590]
    # Sum of the nine training sets: 949,733. Each task is trained by 1 single + 8 STILTs targets
    # + 8 MTL pairs + 1 MTL_All = 18 runs per seed: 10 epochs x 5 seeds x 18 x 949,733.
    assert sum(cost.TRAIN_SIZES.values()) == 949_733
    assert totals["single"]["train_examples"] == 10 * 5 * 949_733 == 47_486_650
    assert totals["total"]["train_examples"] == 854_759_700
    # Dev sets sum to 69,711; 20 evaluations x 5 seeds x 18.
    assert totals["total"]["eval_examples"] == 125_479_800
    assert totals["total"]["train_h"] == pytest.approx(854_759_700 / 2959 / 3600)  # 80.24 h
    assert totals["total"]["train_h"] == pytest.approx(80.24, abs=0.01)
    assert totals["total"]["eval_h"] == pytest.approx(7.18, abs=0.01)
    assert totals["total"]["total_h"] == pytest.approx(87.42, abs=0.01)
    # The shell loop for RTE with MNLI: single RTE, single MNLI, STILTs, MTL, 5 seeds each:
    # train 50 x (3 x 2,490 + 2 x 392,702), eval 100 x (3 x 277 + 2 x 19,647).
    pair = cost.project(cost.pair_loop_runs("rte", "mnli"), rates)["total"]
    assert pair["runs"] == 20
    assert pair["train_examples"] == 39_643_700 and pair["eval_examples"] == 4_012_500
    assert pair["total_h"] == pytest.approx(39_643_700 / 2959 / 3600 + 4_012_500 / 4853 / 3600)


def test_paper_cost_cli_and_json_rates(tmp_path):
    cost = load_bench("paper_cost")
    out = invoke(cost, ["--train-rate", 2959, "--eval-rate", 4853])
    assert "87.4 GPU-hours" in out and "Assumptions" in out
    # A gpu_train.py result with three measured lengths: tasks take the nearest one.
    cases = [{"name": f"loop-{t}", "kind": "loop", "tasks": [t], "compile": False,
              "train_examples_per_s": r, "eval_examples_per_s": 10 * r, "train_tokens_per_example": n,
              "checkpoint_seconds_per_eval": 2.0} for t, r, n in (("sst2", 9000, 14.0), ("qnli", 5000, 53.0),
                                                                   ("rte", 4000, 66.5))]
    cases.append({"name": "loop-mtl-rte+sst2", "kind": "loop", "tasks": ["rte", "sst2"], "compile": False,
                  "train_examples_per_s": 1.0, "eval_examples_per_s": 1.0, "checkpoint_seconds_per_eval": None})
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"meta": {"machine": "test", "date": "today"}, "cases": cases,
                                "summary": {"mtl_vs_single": 0.8}}))
    rates = cost.rates_from_json(path, "loop")
    assert rates.mtl_factor == 0.8 and rates.checkpoint_seconds == 2.0
    assert [rates.measured_like(t) for t in ("cola", "stsb", "mrpc", "mnli", "qqp", "wnli", "rte")] == \
        ["sst2", "sst2", "qnli", "qnli", "qnli", "qnli", "rte"]
    single_cola = cost.run_cost(cost.Run("single", ("cola",), 1), rates)
    assert single_cola["train_s"] == pytest.approx(10 * 8551 / 9000)
    assert single_cola["checkpoint_s"] == 40.0
    mtl = cost.run_cost(cost.Run("mtl", ("rte", "sst2"), 1), rates)
    assert mtl["train_s"] == pytest.approx(10 * (2490 / 4000 + 67349 / 9000) / 0.8)
    assert "87.4" not in invoke(cost, ["--from-json", path])


# --------------------------------------------------------------------------- helpers


def test_plan_size_and_steady_rates(tmp_path):
    sys.path.insert(0, str(BENCH))
    import common
    from transformers import RobertaConfig

    assert common.plan_size([5463], 200 * 128) == (None, 5)  # 25,600 / 5,463 -> 5 epochs
    assert common.plan_size([67349], 25600) == (25600, 1)
    cap, epochs = common.plan_size([2490, 67349], 25600)
    assert epochs == 1 and 2490 + cap == 25600
    # Two epochs of 10 + 10 + 5 examples, batch 10; logged every 2 steps at rates 10 then 20.
    sizes = [10, 10, 5]
    log = [{"step": 2, "examples_per_second": 10.0}, {"step": 4, "examples_per_second": 20.0},
           {"step": 6, "examples_per_second": 30.0}]
    # Intervals after the first: steps 3-4 = 5 + 10 examples in 0.75 s, 5-6 = 10 + 5 in 0.5 s.
    assert common.steady_train_rate(log, sizes) == pytest.approx(30 / 1.25)
    assert common.steady_eval_seconds([9.0, 1.0, 3.0, 2.0]) == 2.0
    # Padding: task 0 has rows of 3 and 10 tokens, task 1 one of 5; one mixed batch of all three.
    import numpy as np

    lengths, batch = [np.array([3, 10]), np.array([5])], np.array([[0, 0], [1, 0], [0, 1]])
    assert common.padded_tokens(lengths, [batch], None) == 10  # all padded to 10
    assert common.padded_tokens(lengths, [batch], 8) == 16
    assert common.padded_tokens(lengths, [batch], None, split=2) == pytest.approx((5 + 5 + 10) / 3)
    assert common.padded_tokens(lengths, [batch], 8, split=2) == pytest.approx((8 + 8 + 16) / 3)
    # DistilRoBERTa-base's shape: 6 layers x (4 x (768^2 + 768) + 2 x 768 x 3072 + 3072 + 768
    # + 2 x 2 x 768) = 42,527,232 parameters outside the embeddings; at issue 6's 2,959 ex/s and
    # 51 tokens per example that is the "39 useful TFLOP/s".
    RobertaConfig(**common.DISTILROBERTA_SHAPE).save_pretrained(tmp_path)
    n = common.nonembedding_params(tmp_path)
    assert n == 42_527_232
    assert common.tflops(6, n, 51, 2959) == pytest.approx(38.5, abs=0.05)


# --------------------------------------------------------------------------- tiny runs


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread, and a busy shared CPU makes OpenMP threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def bench_glue(tiny_glue, tmp_path) -> Path:
    """The tiny GLUE folder with a QNLI dev set (RTE's rows under QNLI's header)."""
    root = tmp_path / "glue"
    for folder in ("SST-2", "RTE"):
        shutil.copytree(tiny_glue / folder, root / folder)
    (root / "QNLI").mkdir()
    rows = (tiny_glue / "RTE" / "dev.tsv").read_text().splitlines()[1:]
    (root / "QNLI" / "dev.tsv").write_text("index\tquestion\tsentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def test_gpu_train_tiny_on_cpu(bench_glue, minilm_path, tmp_path, one_thread):
    gpu = load_bench("gpu_train")
    out = tmp_path / "gpu.json"
    output = invoke(gpu, ["--device", "cpu", "--tiny", "--steps", 4, "--batch-size", 8,
                          "--cases", "loop-qnli,loop-mtl-rte+sst2,trainer-paper-qnli",
                          "--data-dir", bench_glue, "--tokenizer", minilm_path,
                          "--work-dir", tmp_path / "work", "--out", out])
    assert "loop / Trainer (paper)" in output
    result = json.loads(out.read_text())
    names = [c["name"] for c in result["cases"]]
    assert names == ["loop-qnli", "loop-mtl-rte+sst2", "trainer-paper-qnli"]
    for case in result["cases"]:
        assert case["train_examples_per_s"] > 0 and case["eval_examples_per_s"] > 0, case
        assert case["train_tflops"] > 0 and case["precision"] == "no"
    assert result["cases"][1]["train_sizes"] == {"rte": 16, "sst2": 16}  # 4 steps x 8, capped evenly
    assert result["meta"]["nonembedding_params"] > 0
    assert result["summary"]["train_loop_vs_trainer_paper"] > 0


def test_cpu_train_tiny(bench_glue, tmp_path, one_thread):
    cpu = load_bench("cpu_train")
    out = tmp_path / "cpu.json"
    output = invoke(cpu, ["--models", "tiny", "--cases", "rte", "--steps", 3, "--batch-size", 8,
                          "--data-dir", bench_glue, "--out", out])
    assert "| tiny | rte |" in output
    (case,) = json.loads(out.read_text())["cases"]
    assert case["train_examples_per_s"] > 0 and case["steps"] == 3

"""Pairwise MTL and MTL_All end to end on a tiny encoder: records, sampling, size experiments."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import model_dir, REPO_ROOT, fails, read_result, run_script, stopped_at_a_checkpoint_then_resumed, tiny_args


def test_dynamic_mtl_after_single_runs(tiny_model, tiny_glue, tmp_path):
    for task in ("rte", "sst2"):
        run_script("train_stilts", ["--target", task, *tiny_args(tiny_model, tiny_glue, tmp_path)])
    run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--support-seeds", "0",
                             *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=3)])
    record = read_result(tmp_path, "mtl", "rte--sst2")
    singles = {t: read_result(tmp_path, "single", t)["best"]["score"] for t in ("rte", "sst2")}
    assert record["single_scores"] == singles
    slug = model_dir(tmp_path, tiny_model).name
    assert record["single_scores_from"] == {"runs": {"rte": f"{slug}/single/rte", "sst2": f"{slug}/single/sst2"},
                                            "seeds": [0]}
    assert record["sampling"] == "dynamic" and record["batching"] == "heterogeneous"
    assert record["support"] == ["sst2"] and record["tasks"] == ["rte", "sst2"]
    # Epoch 0 by size (48 and 48 examples); later epochs: softmax of the gaps at the epoch's end.
    p = record["probabilities"]
    assert p["0"] == [0.5, 0.5]
    for epoch in (1, 2):
        end = [h for h in record["history"] if h["epoch"] == float(epoch)][0]["metrics"]
        gaps = np.array([singles["rte"] - end["rte"]["accuracy"], singles["sst2"] - end["sst2"]["accuracy"]])
        expected = np.exp(gaps) / np.exp(gaps).sum()
        assert np.allclose(p[str(epoch)], expected, atol=1e-12)
    assert len(record["history"]) == 6
    for entry in record["history"]:
        assert set(entry["metrics"]) == {"rte", "sst2"}
        assert entry["probabilities"] == dict(zip(["rte", "sst2"], p[str(int(np.ceil(entry["epoch"])) - 1)]))
    rte_scores = [h["metrics"]["rte"]["accuracy"] for h in record["history"]]
    sst_scores = [h["metrics"]["sst2"]["accuracy"] for h in record["history"]]
    assert record["best"]["task"] == "rte" and record["best"]["score"] == max(rte_scores)
    assert record["best_by_task"]["sst2"]["score"] == max(sst_scores)


def test_mtl_all_records_each_task_best(tiny_model, tiny_glue, tmp_path):
    run_script("train_mtl_all", ["--tasks", "rte,sst2,cola,stsb", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    record = read_result(tmp_path, "mtl_all", "all__tasks-rte+sst2+cola+stsb")
    assert record["method"] == "mtl_all" and record["target"] is None and record["sampling"] == "size"
    assert set(record["best_by_task"]) == {"rte", "sst2", "cola", "stsb"}
    assert record["probabilities"] == {"0": [0.25] * 4, "1": [0.25] * 4}
    for task, metric in (("cola", "mcc"), ("stsb", "spearman")):
        scores = [h["metrics"][task][metric] for h in record["history"]]
        assert record["best_by_task"][task]["score"] == max(scores)
    means = [np.mean([h["metrics"]["rte"]["accuracy"], h["metrics"]["sst2"]["accuracy"],
                      h["metrics"]["cola"]["mcc"], h["metrics"]["stsb"]["spearman"]])
             for h in record["history"]]
    assert record["best"]["metric"] == "mean_main"
    assert record["best"]["score"] == pytest.approx(max(means))


def test_size_experiment_subsamples_and_names_the_run(tiny_model, tiny_glue, tmp_path):
    run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                             "--target-fraction", 0.5, "--support-ratio", 1.5,
                             *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    record = read_result(tmp_path, "mtl", "rte--sst2__sampling-size_tf-0.5_sr-1.5")
    assert record["train_sizes"] == {"rte": 24, "sst2": 36}
    assert record["size_experiment"] == {"target_fraction": 0.5, "support_ratio": 1.5, "data_seed": 0}
    # STILTs for the same cell starts from the single run on the same 36 SST-2 examples.
    fails("train_stilts", ["--target", "rte", "--support", "sst2", "--target-fraction", 0.5,
                           "--support-ratio", 1.5, *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)],
          "--max-train-examples 36")
    run_script("train_stilts", ["--target", "sst2", "--max-train-examples", 36,
                                *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    run_script("train_stilts", ["--target", "rte", "--support", "sst2", "--target-fraction", 0.5,
                                "--support-ratio", 1.5, "--support-seeds", "0",
                                *tiny_args(tiny_model, tiny_glue, tmp_path, epochs=1)])
    stilts = read_result(tmp_path, "stilts", "rte--sst2__tf-0.5_sr-1.5")
    assert stilts["train_sizes"] == {"rte": 24}
    assert stilts["init_model"].endswith("single/sst2__n-36/seed-0/best")


def test_mtl_bad_input(tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    fails("train_mtl", ["--target", "rte", "--support", "sst2", *tiny_args(tiny_model, tiny_glue, out)],
          "Dynamic sampling needs the single-task runs of every supporting seed",
          "for seed in 0 1 2 3 4; do accelerate launch --quiet scripts/train_stilts.py --target rte",
          "scripts/train_stilts.py --target sst2", "--single-scores")
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size", "--support-ratio", 3,
                        *tiny_args(tiny_model, tiny_glue, out)], "needs 144", "only 48")
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "often",
                        *tiny_args(tiny_model, tiny_glue, out)], "--sampling", "dynamic", "uniform")
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--batching", "mixed",
                        *tiny_args(tiny_model, tiny_glue, out)], "--batching", "heterogeneous")
    fails("train_mtl_all", ["--tasks", "rte,sst2,RTE", *tiny_args(tiny_model, tiny_glue, out)], "listed twice")
    assert not out.exists()
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"RTE": 0.6}))
    fails("train_mtl", ["--target", "rte", "--support", "sst2", "--single-scores", scores,
                        *tiny_args(tiny_model, tiny_glue, out)], "no score for: sst2")


def test_gradient_accumulation_matches_one_big_batch(tiny_model_no_dropout, tiny_glue, tmp_path):
    for accum in (1, 2):
        run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size", "--keep-state",
                                 "--grad-accum", accum, "--output-dir", tmp_path / f"a{accum}",
                                 *tiny_args(tiny_model_no_dropout, tiny_glue, tmp_path / f"a{accum}", epochs=1)])
    a, b = (load_file(model_dir(tmp_path / f"a{k}", tiny_model_no_dropout) / "mtl" / "rte--sst2__sampling-size" / "seed-0" / "state" /
                      "model.safetensors") for k in (1, 2))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["standard", "original"])
def test_two_processes_match_one(tiny_model_no_dropout, tiny_glue, tmp_path, protocol):
    """accelerate launch with 2 CPU processes == one process, same seed and global batch (the
    original protocol: each task's mean over the global batch, whatever the process's share)."""
    common = ["--target", "rte", "--support", "sst2", "--sampling", "size", "--log-every", 1, "--keep-state",
              "--protocol", protocol, *tiny_args(tiny_model_no_dropout, tiny_glue, "OUT", epochs=1)]
    name = "rte--sst2__sampling-size" if protocol == "standard" else "rte--sst2__protocol-original_sampling-size"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    runs = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        args = [str(a) if a != "OUT" else str(out) for a in common]
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(REPO_ROOT / "launch_configs" / "cpu_multi_process.yaml"), "--num_processes",
                   str(processes), str(REPO_ROOT / "scripts" / "train_mtl.py"), *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[processes] = model_dir(out, tiny_model_no_dropout) / "mtl" / name / "seed-0"
    assert read_result(runs[2].parents[2], "mtl", name)["timing"]["num_processes"] == 2
    losses = {k: [json.loads(line)["loss"] for line in (v / "train_log.jsonl").read_text().splitlines()]
              for k, v in runs.items()}
    assert len(losses[1]) == len(losses[2]) == 12
    np.testing.assert_allclose(losses[2][:5], losses[1][:5], rtol=1e-5)
    a, b = (load_file(runs[k] / "state" / "model.safetensors") for k in (1, 2))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-4)


def test_interrupted_dynamic_mtl_resumes_the_same_batches(tiny_model, tiny_glue, tmp_path, monkeypatch):
    """Stopped after its third checkpoint (mid-epoch 2), a dynamic MTL run resumes with the saved
    probabilities and sampler position and ends exactly like an uninterrupted run."""
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"rte": 0.9, "sst2": 0.8}))

    def command(out):
        return ["--target", "rte", "--support", "sst2", "--single-scores", scores, "--log-every", 1,
                *tiny_args(tiny_model, tiny_glue, out, epochs=3)]

    run_script("train_mtl", command(tmp_path / "clean"))
    stopped_at_a_checkpoint_then_resumed(monkeypatch, "train_mtl", command(tmp_path / "resumed"),
                                         "after_checkpoint:oserror:3")
    clean, resumed = (read_result(tmp_path / n, "mtl", "rte--sst2") for n in ("clean", "resumed"))
    assert clean["probabilities"] == resumed["probabilities"]
    assert clean["probabilities"]["1"] != [0.5, 0.5]  # the gaps moved p after epoch 0
    assert clean["history"] == resumed["history"] and clean["best_by_task"] == resumed["best_by_task"]
    logs = [[json.loads(line)["loss"] for line in (model_dir(tmp_path / n, tiny_model) / "mtl" / "rte--sst2" / "seed-0" /
                                                    "train_log.jsonl").read_text().splitlines()]
            for n in ("clean", "resumed")]
    assert logs[0] == logs[1] and len(logs[0]) == 36

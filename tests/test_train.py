"""End-to-end runs of the train scripts on a tiny random encoder and tiny GLUE files (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import model_dir, fails, read_result, run_script, run_subprocess, tiny_args
from synthetic import write_record


def test_single_run_writes_a_complete_record(tiny_model, tiny_glue, tmp_path):
    run_script("train_stilts", ["--target", "RTE", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    folder = model_dir(tmp_path, tiny_model) / "single" / "rte" / "seed-0"
    record = read_result(tmp_path, "single", "rte")
    assert record["schema"] == 1 and record["method"] == "single"
    assert record["target"] == "rte" and record["support"] == [] and record["tasks"] == ["rte"]
    assert record["train_sizes"] == {"rte": 48}
    # 48 examples / batch 8 = 6 steps per epoch; evaluations at 3 and 6 steps of each epoch.
    assert [h["step"] for h in record["history"]] == [3, 6, 9, 12]
    assert [h["epoch"] for h in record["history"]] == [0.5, 1.0, 1.5, 2.0]
    scores = [h["metrics"]["rte"]["accuracy"] for h in record["history"]]
    assert record["best"]["score"] == max(scores)
    assert record["best"]["step"] == record["history"][scores.index(max(scores))]["step"]
    assert record["best_by_task"]["rte"]["score"] == record["best"]["score"]
    assert record["best"]["metric"] == "accuracy"
    assert record["config"]["lr"] == 1e-3 and record["timing"]["num_processes"] == 1
    assert record["timing"]["examples"] == 96
    assert (folder / "best" / "encoder" / "config.json").is_file()
    assert not (folder / "state").exists()  # a finished run keeps no resume state
    # Rerunning a finished run skips it and changes nothing.
    before = (folder / "result.json").read_bytes()
    result = run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, tmp_path)])
    assert "already complete" in result.output
    assert (folder / "result.json").read_bytes() == before


def test_stilts_starts_from_the_best_of_all_supporting_seeds(tiny_model, tiny_glue, tmp_path, monkeypatch):
    for seed in (0, 1):
        run_script("train_stilts", ["--target", "sst2", "--seed", seed,
                                    *tiny_args(tiny_model, tiny_glue, tmp_path)])
    stilts = ["--target", "rte", "--support", "sst2", *tiny_args(tiny_model, tiny_glue, tmp_path)]
    # Two of the five supporting seeds: one error with the loop that makes the other three.
    fails("train_stilts", stilts, "every supporting seed (0 1 2 3 4; --support-seeds)",
          "sst2: finished seeds: 0, 1.", "for seed in 2 3 4; do accelerate launch --quiet "
          "scripts/train_stilts.py --target sst2 --model", "--init-from")
    assert not (model_dir(tmp_path, tiny_model) / "stilts").exists()
    # Seeds 2-4 as records that cannot be the best (dev score 0), so no more training is needed.
    for seed in (2, 3, 4):
        write_record(tmp_path, "single", "sst2", seed=seed, score=0.0, model=str(tiny_model))
    records = [read_result(tmp_path, "single", "sst2", s) for s in (0, 1)]
    best_seed = max((0, 1), key=lambda s: (records[s]["best"]["score"], -s))
    expected = load_file(model_dir(tmp_path, tiny_model) / "single" / "sst2" / f"seed-{best_seed}" / "best" / "encoder" /
                         "model.safetensors")

    import mtlvsift.train.loop as train

    loaded = {}
    real_load_encoder = train.load_encoder

    def spy(path, *args):
        encoder = real_load_encoder(path, *args)
        loaded["path"] = path
        loaded["weights"] = {k: v.clone() for k, v in encoder.state_dict().items()}
        return encoder

    monkeypatch.setattr(train, "load_encoder", spy)
    run_script("train_stilts", stilts)
    assert Path(loaded["path"]) == model_dir(tmp_path, tiny_model) / "single" / "sst2" / f"seed-{best_seed}" / "best"
    assert set(expected) <= set(loaded["weights"])
    for name, tensor in expected.items():
        assert torch.equal(loaded["weights"][name], tensor), name
    base = load_file(Path(tiny_model) / "model.safetensors")
    changed = [k for k in expected if k in base and not torch.equal(base[k], expected[k])]
    assert changed, "the supporting run should have moved the encoder away from its initial weights"
    record = read_result(tmp_path, "stilts", "rte--sst2")
    assert record["method"] == "stilts" and record["support"] == ["sst2"]
    assert record["init_model"].endswith(f"seed-{best_seed}/best")
    assert record["start_model"] == {"run": f"{model_dir(tmp_path, tiny_model).name}/single/sst2/seed-{best_seed}", "seed": best_seed,
                                     "score": records[best_seed]["best"]["score"],
                                     "seeds": [0, 1, 2, 3, 4]}
    assert record["protocol"] == "standard" and record["config"]["support_seeds"] == [0, 1, 2, 3, 4]


def test_killed_run_resumes_to_the_same_weights(tiny_model, tiny_glue, tmp_path):
    """SIGKILL right after the first half-epoch checkpoint; the rerun ends exactly like a clean run."""
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    # Both runs are killed just after writing result.json, before the final state is removed,
    # so that the final weights can be compared.
    done = run_subprocess(["--target", "rte", *tiny_args(tiny_model, tiny_glue, clean)], "after_result:1")
    assert done.returncode == -9, done.stderr
    first = run_subprocess(["--target", "rte", *tiny_args(tiny_model, tiny_glue, resumed)], "after_checkpoint:1")
    assert first.returncode == -9, first.stderr
    folder = model_dir(resumed, tiny_model) / "single" / "rte" / "seed-0"
    progress = json.loads((folder / "state" / "progress.json").read_text())
    assert progress["step"] == 3 and not (folder / "result.json").exists()
    second = run_subprocess(["--target", "rte", *tiny_args(tiny_model, tiny_glue, resumed)], "after_result:1")
    assert second.returncode == -9, second.stderr
    a = load_file(model_dir(clean, tiny_model) / "single" / "rte" / "seed-0" / "state" / "model.safetensors")
    b = load_file(folder / "state" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ra, rb = read_result(clean, "single", "rte"), read_result(resumed, "single", "rte")
    assert ra["history"] == rb["history"] and ra["best"] == rb["best"]
    log_steps = [json.loads(line)["step"] for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert log_steps == sorted(set(log_steps))  # no step logged twice after the resume


@pytest.mark.slow
def test_minilm_learns_sst2(minilm_path, glue_dir, tmp_path):
    """A real pre-trained encoder fine-tuned on 2,000 SST-2 examples for one epoch."""
    import time

    start = time.time()
    run_script("train_stilts", ["--target", "sst2", "--model", "minilm", "--data-dir", glue_dir,
                                "--output-dir", tmp_path, "--epochs", 1, "--max-train-examples", 2000,
                                "--batch-size", 16, "--lr", 1.5e-4, "--warmup-ratio", 0.1,
                                "--max-seq-length", 64])
    record = read_result(tmp_path, "single", "sst2__n-2000")
    print(f"minilm SST-2: {time.time() - start:.0f} s, dev accuracy {record['best']['score']:.4f}")
    assert record["train_sizes"] == {"sst2": 2000}
    assert record["best"]["score"] >= 0.80


@pytest.mark.slow
def test_compile_gives_the_same_dev_scores(tiny_model_no_dropout, tiny_glue, tmp_path):
    """--compile (torch.compile through Module.compile) changes speed, not results."""
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        run_script("train_stilts", ["--target", "rte", *extra,
                                    *tiny_args(tiny_model_no_dropout, tiny_glue, tmp_path / name, epochs=1)])
    eager, compiled = (read_result(tmp_path / n, "single", "rte") for n in ("eager", "compiled"))
    for a, b in zip(eager["history"], compiled["history"]):
        assert a["metrics"]["rte"]["accuracy"] == pytest.approx(b["metrics"]["rte"]["accuracy"], abs=1e-9)
    losses = [[json.loads(line)["loss"] for line in (model_dir(tmp_path / n, tiny_model_no_dropout) / "single" / "rte" / "seed-0" /
                                                      "train_log.jsonl").read_text().splitlines()]
              for n in ("eager", "compiled")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)

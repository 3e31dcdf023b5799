"""Golden values: a tiny fixed MTL run whose first losses and dev metrics are pinned as numbers.

Every other loop test compares two runs (resumed vs clean, 2 vs 1 process, compiled vs eager),
so a change that alters both alike (the loss scale, the sampling, the data order, the head
initialisation) passes them. This one fails on any such change. If a change is meant to alter
these numbers, say why in its commit and pin the new ones.

The run: a 2-layer random BERT without dropout (written by the tests, fixed seed), fp32 on the
CPU, RTE (target) + STS-B (support), size sampling, heterogeneous batches of 8, lr 1e-3, one
epoch of 96 rows = 12 steps, the loss logged at every step.
"""

from __future__ import annotations

import json

import pytest

from helpers import model_dir, run_script

GOLDEN_LOSSES = [5.897140026092529, 9.183866500854492, 4.705202579498291, 6.6305460929870605,
                 4.417096138000488, 4.916406154632568, 5.615729331970215, 5.439655303955078,
                 2.1428849697113037, 2.899517774581909]
GOLDEN_FIRST_DEV = {"rte": {"accuracy": 0.375},
                    "stsb": {"pearson": 0.6504203012041982, "spearman": 0.4264705882352941}}


def test_tiny_mtl_run_matches_its_golden_values(tiny_model_no_dropout, tiny_glue, tmp_path):
    run_script("train_mtl", ["--target", "rte", "--support", "stsb", "--sampling", "size",
                             "--model", tiny_model_no_dropout, "--data-dir", tiny_glue,
                             "--output-dir", tmp_path, "--epochs", 1, "--batch-size", 8,
                             "--lr", 1e-3, "--log-every", 1])
    folder = model_dir(tmp_path, tiny_model_no_dropout) / "mtl" / "rte--stsb__sampling-size" / "seed-0"
    log = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == list(range(1, 13))
    assert [entry["loss"] for entry in log[:10]] == pytest.approx(GOLDEN_LOSSES, rel=1e-4)
    record = json.loads((folder / "result.json").read_text())
    first = record["history"][0]
    assert first["step"] == 6 and first["probabilities"] == {"rte": 0.5, "stsb": 0.5}
    assert first["metrics"].keys() == GOLDEN_FIRST_DEV.keys()
    for task, metrics in GOLDEN_FIRST_DEV.items():
        assert first["metrics"][task] == pytest.approx(metrics, rel=1e-4), task

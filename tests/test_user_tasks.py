"""Task-file tasks behave like GLUE tasks: single, STILTs, pairwise MTL and MTL_All runs with GLUE
tasks, the tokenization cache, the run identity, and compare.py from the records alone."""

from __future__ import annotations

import json

import pytest

from helpers import model_dir, fails, read_result, run_script, tiny_args, write_user_tasks
from mtlvsift.tasks import get_task, set_user_tasks
from mtlvsift.train.data.tokenized import cache_root, load_tokenized
from mtlvsift.train.data.task_files import load_task_files


def test_own_tasks_through_every_method_then_compare(tiny_model, tiny_glue, tmp_path):
    task_file = write_user_tasks(tmp_path / "mine")
    out = tmp_path / "outputs"

    def train(script, *args):  # STILTs and dynamic sampling read the single runs of seed 0
        run_script(script, [*args, "--task-file", task_file, "--support-seeds", "0",
                            *tiny_args(tiny_model, tiny_glue, out, epochs=1)])

    # A missing prerequisite's command names the task file.
    fails("train_stilts", ["--target", "mysent", "--support", "myscore", "--task-file", task_file,
                           *tiny_args(tiny_model, tiny_glue, out, epochs=1)],
          "scripts/train_stilts.py --target myscore", f"--task-file {task_file}")
    for task in ("mysent", "myscore", "rte"):
        train("train_stilts", "--target", task)
    for task in ("mysent", "myscore"):
        train("train_stilts", "--target", task, "--support", "rte")
        train("train_mtl", "--target", task, "--support", "rte")
    train("train_mtl_all", "--tasks", "mysent,myscore,rte,sst2")

    single = read_result(out, "single", "mysent")
    assert single["best"]["metric"] == "f1" and set(single["history"][0]["metrics"]["mysent"]) == {"accuracy", "f1"}
    assert single["train_sizes"] == {"mysent": 48}
    assert read_result(out, "single", "myscore")["best"]["metric"] == "spearman"
    stilts = read_result(out, "stilts", "mysent--rte")
    assert stilts["init_model"].endswith("single/rte/seed-0/best")
    mtl = read_result(out, "mtl", "myscore--rte")
    assert mtl["tasks"] == ["myscore", "rte"] and mtl["single_scores"]["myscore"] == \
        read_result(out, "single", "myscore")["best"]["score"]
    everything = read_result(out, "mtl_all", "all__tasks-mysent+myscore+rte+sst2")
    assert {t: b["metric"] for t, b in everything["best_by_task"].items()} == {
        "mysent": "f1", "myscore": "spearman", "rte": "accuracy", "sst2": "accuracy"}
    sha = read_result(out, "single", "mysent")["config"]["task_definitions"]["mysent"]
    assert everything["config"]["task_definitions"] == {"mysent": sha, "myscore": sha}
    assert "task_definitions" not in json.loads((model_dir(out, tiny_model) / "single" / "rte" / "seed-0" / "config.json").read_text())

    set_user_tasks([])  # compare.py reads the records alone
    report = tmp_path / "report"
    result = run_script("compare", ["--outputs", out, "--report-dir", report])
    summary = json.loads((report / "summary.json").read_text())
    # Each task's majority-class (regression: mean-label) baseline, as its runs recorded it.
    baseline = read_result(out, "single", "mysent")["baselines"]["mysent"]["score"]
    assert summary["task_info"]["mysent"] == {"train_size": 48, "main_metric": "f1",
                                              "baseline": 100 * baseline}  # points
    assert summary["task_info"]["myscore"] == {"train_size": 48, "main_metric": "spearman",
                                               "baseline": 0.0}
    assert summary["task_info"]["rte"]["main_metric"] == "accuracy"
    tasks_line = "Tasks (training examples, main metric): "
    assert "MYSENT 48 f1" in result.output and "MYSCORE 48 spearman" in result.output
    assert tasks_line in (report / "report.md").read_text()
    cells = {(c["target"], c["support"]): c for c in summary["cells"]}
    for task in ("mysent", "myscore"):
        cell = cells[(task, "rte")]
        assert cell["n_mtl"] == 1 and cell["n_stilts"] == 1
        assert cell["stilts_mean"] == pytest.approx(100 * read_result(out, "stilts", f"{task}--rte")["best"]["score"])
    assert "MYSENT" in summary["tables"]["table1"]["columns"]
    # The commands of the missing runs name the task file the runs were made with.
    stilts_rte = [m["command"] for m in summary["missing"] if m["method"] == "stilts" and m["target"] == "rte"]
    assert stilts_rte and all(f"--task-file {task_file}" in c for c in stilts_rte)


def test_a_changed_task_file_is_not_resumed(tiny_model, tiny_glue, tmp_path):
    task_file = write_user_tasks(tmp_path / "mine")
    out = tmp_path / "out"
    args = ["--target", "mysent", "--task-file", task_file, *tiny_args(tiny_model, tiny_glue, out, epochs=1)]
    run_script("train_stilts", args)
    before = (model_dir(out, tiny_model) / "single" / "mysent" / "seed-0" / "result.json").read_bytes()
    assert set(json.loads(before)["data_fingerprints"]["mysent"]) == {"train", "dev"}
    # Its data files are fingerprinted like GLUE's: a changed one is refused by name.
    train = tmp_path / "mine" / "data" / "sent_train.csv"
    original = train.read_bytes()
    train.write_bytes(original.replace(b",pos\r\n", b",neg\r\n"))
    fails("train_stilts", args, str(train), "is not the MYSENT train data", "task file", "--overwrite")
    train.write_bytes(original)
    task_file.write_text(task_file.read_text().replace("[neg, pos]", "[pos, neg]"))
    fails("train_stilts", args, "different config", "task_definitions", "--overwrite")
    assert (model_dir(out, tiny_model) / "single" / "mysent" / "seed-0" / "result.json").read_bytes() == before


def test_tokenization_cache_follows_the_data_and_the_task_file(minilm_path, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    task_file = write_user_tasks(tmp_path / "mine", n_train=8, n_dev=4)

    def tokenized_labels():
        load_task_files([task_file])
        return load_tokenized(get_task("mysent"), "train", tokenizer, 32, None)["label"]

    def cached():
        return len(list((cache_root() / "tokenized").iterdir()))

    labels = tokenized_labels()
    assert tokenized_labels() == labels and cached() == 1  # the same file: read from the cache
    train = tmp_path / "mine" / "data" / "sent_train.csv"
    train.write_text(train.read_text().replace(",pos\n", ",neg\n"))
    assert tokenized_labels() == [0.0] * 8 and cached() == 2  # new content: tokenized again
    task_file.write_text(task_file.read_text().replace("[neg, pos]", "[pos, neg]"))
    assert tokenized_labels() == [1.0] * 8 and cached() == 3  # new label order: again


def test_dry_run_counts_a_task_file_task_without_tokenizing(tiny_model, tiny_glue, tmp_path):
    """The plan reads a task file's training data through its reader (never tokenized), under
    either protocol."""
    import os

    task_file = write_user_tasks(tmp_path / "mine", n_train=30)
    out, plan_file = tmp_path / "out", tmp_path / "plan.json"
    for protocol in ("standard", "original"):
        run_script("train_mtl", ["--target", "mysent", "--support", "rte", "--task-file", task_file,
                                 "--sampling", "size", "--protocol", protocol,
                                 "--plan-json", plan_file,
                                 *tiny_args(tiny_model, tiny_glue, out)])
        plan = json.loads(plan_file.read_text())
        assert plan["tasks"] == ["mysent", "rte"] and plan["available_train_sizes"] == [30, 48]
        assert "task files' training data" in plan["sizes_from"] and plan["protocol"] == protocol
    assert plan["quotas"] == [3, 5]  # original: the authors' quotas of a batch of 8 by size
    assert not out.exists()
    assert not any(os.scandir(os.environ["MTLVSIFT_CACHE_DIR"]))

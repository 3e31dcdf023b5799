"""scripts/predict.py: GLUE submission files, CSVs for task-file tasks, MTL models, bad input."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from helpers import fails, model_dir, read_result, run_dir, run_script, tiny_args, write_user_tasks

RTE_LABELS = {"entailment", "not_entailment"}


def read_tsv(path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_rte_test_submission_and_dev_predictions_match_evaluation(tiny_model, glue_dir, tmp_path):
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "rte", "--max-train-examples", 48, "--max-seq-length", 64,
                                *tiny_args(tiny_model, glue_dir, out, epochs=1)])
    run = model_dir(out, tiny_model) / "single" / "rte__n-48" / "seed-0"
    result = run_script("predict", ["--run", run, "--split", "test", "--data-dir", glue_dir,
                                    "--out", tmp_path / "test"])
    assert f"Wrote {tmp_path / 'test' / 'RTE.tsv'}" in result.output
    rows = read_tsv(tmp_path / "test" / "RTE.tsv")
    test_rows = read_tsv(glue_dir / "RTE" / "test.tsv")
    assert rows[0] == ["index", "prediction"] and len(rows) == len(test_rows) == 3001
    assert [r[0] for r in rows[1:]] == [r[0] for r in test_rows[1:]]
    assert {r[1] for r in rows[1:]} <= RTE_LABELS

    # On the dev file, the predictions are those the run's evaluation scored at its best step.
    run_script("predict", ["--run", run, "--file", glue_dir / "RTE" / "dev.tsv", "--out", tmp_path / "file"])
    run_script("predict", ["--run", run, "--split", "dev", "--data-dir", glue_dir, "--out", tmp_path / "dev"])
    predicted = read_tsv(tmp_path / "file" / "RTE.tsv")
    assert predicted == read_tsv(tmp_path / "dev" / "RTE.tsv")
    gold = {r[0]: r[3] for r in read_tsv(glue_dir / "RTE" / "dev.tsv")[1:]}
    assert len(predicted) == 1 + len(gold) == 278
    accuracy = sum(gold[i] == label for i, label in predicted[1:]) / len(gold)
    assert accuracy == read_result(out, "single", "rte__n-48")["best"]["score"]


def write_tiny_mnli(folder, n: int = 16) -> None:
    """MNLI's layout: the text columns and gold label by name, two dev and two test files."""
    header = ["index", "genre", "sentence1", "sentence2"]
    labels = ["entailment", "neutral", "contradiction"]
    (folder / "MNLI").mkdir(parents=True)
    for name in ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched"):
        rows = [[str(i), "fiction", f"a man {'sleeps' if i % 3 else 'runs'} .", "someone sleeps ."]
                for i in range(n + (name == "test_mismatched"))]
        columns = header if name.startswith("test") else header + ["gold_label"]
        if not name.startswith("test"):
            rows = [r + [labels[int(r[0]) % 3]] for r in rows]
        (folder / "MNLI" / f"{name}.tsv").write_text("\n".join("\t".join(r) for r in [columns, *rows]) + "\n")


def test_mnli_gives_matched_and_mismatched_files(tiny_model, tmp_path):
    glue = tmp_path / "glue"
    write_tiny_mnli(glue)
    out = tmp_path / "out"
    run_script("train_stilts", ["--target", "mnli", *tiny_args(tiny_model, glue, out, epochs=1)])
    run_script("predict", ["--run", model_dir(out, tiny_model) / "single" / "mnli" / "seed-0", "--split", "test",
                           "--data-dir", glue, "--out", tmp_path / "p"])
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    for name, rows in (("MNLI-m", 16), ("MNLI-mm", 17)):
        lines = read_tsv(tmp_path / "p" / f"{name}.tsv")
        assert len(lines) == 1 + rows and lines[0] == ["index", "prediction"]
        assert {label for _, label in lines[1:]} <= {"entailment", "neutral", "contradiction"}


def test_own_task_of_an_mtl_model(tiny_model, tiny_glue, tmp_path):
    task_file = write_user_tasks(tmp_path / "mine")
    out = tmp_path / "out"
    run_script("train_mtl", ["--target", "mysent", "--support", "rte", "--sampling", "size",
                             "--task-file", task_file, *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    run = model_dir(out, tiny_model) / "mtl" / "mysent--rte__sampling-size" / "seed-0"
    # The task file is found through the run record: no --task-file needed.
    run_script("predict", ["--run", run, "--split", "test", "--out", tmp_path / "p"])
    with open(tmp_path / "p" / "mysent.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "prediction"] and [r[0] for r in rows[1:]] == [f"test-{i}" for i in range(16)]
    assert {r[1] for r in rows[1:]} <= {"neg", "pos"}
    run_script("predict", ["--run", run, "--task", "RTE", "--split", "dev", "--data-dir", tiny_glue,
                           "--out", tmp_path / "p"])
    assert len(read_tsv(tmp_path / "p" / "RTE.tsv")) == 17
    fails("predict", ["--run", run, "--task", "sst2", "--split", "dev", "--out", tmp_path / "q"],
          "the run trained mysent, rte")
    # A task file changed since training is refused; the original, passed again, is accepted.
    original = task_file.read_text()
    task_file.write_text(original.replace("[neg, pos]", "[pos, neg]"))
    fails("predict", ["--run", run, "--split", "test", "--out", tmp_path / "q"],
          "Task 'mysent' is not defined as when the run trained", str(task_file))
    moved = tmp_path / "moved.yaml"
    moved.write_text(original.replace("data/", "mine/data/"))
    fails("predict", ["--run", run, "--split", "test", "--out", tmp_path / "q", "--task-file", moved],
          "not defined as when the run trained")  # another content: another hash
    task_file.write_text(original)
    run_script("predict", ["--run", run, "--split", "test", "--out", tmp_path / "q", "--task-file", task_file])
    assert (tmp_path / "q" / "mysent.csv").read_text() == (tmp_path / "p" / "mysent.csv").read_text()


@pytest.mark.parametrize("arguments, expected", [
    (["--split", "test", "--file", "FILE"], "Give either --split test|dev or --file FILE"),
    ([], "Give either --split test|dev or --file FILE"),
    (["--split", "test"], "holds no finished run (result.json is missing)"),
])
def test_bad_input(tmp_path, arguments, expected):
    (tmp_path / "run").mkdir()
    (tmp_path / "FILE").write_text("x")
    arguments = [str(tmp_path / a) if a == "FILE" else a for a in arguments]
    fails("predict", ["--run", tmp_path / "run", "--out", tmp_path / "p", *arguments], expected)
    assert not (tmp_path / "p").exists()


# --- a finished run's damaged best/ or input (issue 24) -----------------------------------------

@pytest.fixture(scope="module")
def finished_run(tiny_model, tiny_glue, tmp_path_factory):
    """A finished single RTE run on the tiny encoder (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished")
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    return model_dir(out, tiny_model) / "single" / "rte" / "seed-0"


def copy_of(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_a_best_model_without_tokenizer_files_is_refused(finished_run, tiny_glue, tmp_path):
    run = copy_of(finished_run, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (run / "best" / "encoder" / name).unlink()
    fails("predict", ["--run", run, "--split", "dev", "--data-dir", tiny_glue, "--out", tmp_path / "p"],
          f"The tokenizer of {run / 'best' / 'encoder'} has 5 tokens", "the folder lacks tokenizer files")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("heads, expected", [
    ([], "heads.json is not an object of task_names, num_labels and share_heads"),
    ({"task_names": ["rte"], "num_labels": [5], "share_heads": False},
     "heads.json gives task rte 5 label(s), but its head in heads.pt has 2 outputs"),
    ({"task_names": ["rte"], "num_labels": ["2"]}, "has no label count (num_labels) for each of its 1 task(s)"),
])
def test_an_edited_heads_json_is_one_error(finished_run, tiny_glue, tmp_path, heads, expected):
    run = copy_of(finished_run, tmp_path)
    (run / "best" / "heads.json").write_text(json.dumps(heads))
    fails("predict", ["--run", run, "--split", "dev", "--data-dir", tiny_glue, "--out", tmp_path / "p"],
          f"The best model of {run} ({run / 'best'}) cannot be loaded", expected)
    assert not (tmp_path / "p").exists()


def test_a_file_with_a_header_only_is_one_error(finished_run, tmp_path):
    header_only = tmp_path / "header.tsv"
    header_only.write_text("index\tsentence1\tsentence2\n")
    fails("predict", ["--run", finished_run, "--file", header_only, "--out", tmp_path / "p"],
          f"{header_only} has no rows to predict")
    assert not (tmp_path / "p").exists()


def test_a_named_pipe_as_file_is_refused_before_it_is_opened(finished_run, tmp_path):
    import os

    from helpers import finishes_within

    fifo = tmp_path / "rows.tsv"
    os.mkfifo(fifo)
    result = finishes_within(60, lambda: run_script("predict", ["--run", finished_run, "--file", fifo,
                                                                "--out", tmp_path / "p"], expect_ok=False), fifo)
    assert result.exit_code == 1 and f"Error: {fifo} is a named pipe, not a regular file" in result.output


# --- the recorded data folder, dev scores, each task's own best model (issue 25) ----------------

def test_the_run_s_own_glue_folder_by_default_and_dev_prints_the_record_s_scores(finished_run, tiny_glue,
                                                                                  tmp_path):
    """Offline, without --data-dir: the folder the run was trained on (its record's config.data_dir),
    not the hub; --split dev prints the scores beside the record's."""
    record = json.loads((finished_run / "result.json").read_text())
    result = run_script("predict", ["--run", finished_run, "--split", "dev", "--out", tmp_path / "p"])
    best = record["best"]
    score = f"{100 * best['score']:.2f}"
    assert f"RTE dev: accuracy {score} (the record: accuracy {score} at step {best['step']})" in result.output
    assert f"RTE: the model of {finished_run / 'best'}" in result.output
    assert (tmp_path / "p" / "RTE.tsv").is_file()
    # A recorded folder that is gone is one error naming --data-dir; --data-dir still wins.
    run = copy_of(finished_run, tmp_path)
    record["config"]["data_dir"] = str(tmp_path / "gone")
    (run / "result.json").write_text(json.dumps(record))
    fails("predict", ["--run", run, "--split", "dev", "--out", tmp_path / "q"],
          f"trained on the GLUE folder {tmp_path / 'gone'}", "--data-dir DIR")
    run_script("predict", ["--run", run, "--split", "dev", "--data-dir", tiny_glue, "--out", tmp_path / "q"])
    # Dev data other than the run's is said so.
    other = shutil.copytree(tiny_glue, tmp_path / "other")
    (other / "RTE" / "dev.tsv").write_text((other / "RTE" / "dev.tsv").read_text().replace("good", "bad"))
    result = run_script("predict", ["--run", run, "--split", "dev", "--data-dir", other, "--out", tmp_path / "r"])
    assert "is not the RTE dev data this run was evaluated on" in " ".join(result.output.split())


def test_each_task_of_an_mtl_run_is_predicted_by_the_model_its_reported_score_comes_from(
        tiny_model, tiny_glue, tmp_path):
    out = tmp_path / "out"
    run_script("train_mtl", ["--target", "rte", "--support", "sst2", "--sampling", "size",
                             *tiny_args(tiny_model, tiny_glue, out, "--lr", 3e-3, epochs=2)])
    run = run_dir(out, "mtl", "rte--sst2__sampling-size")
    record = json.loads((run / "result.json").read_text())
    best, own = record["best"], record["best_by_task"]["sst2"]
    assert best["step"] != own["step"]  # the case under test: SST-2's best is not the selected model's
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("best")) == ["best", "best-sst2"]
    for task, entry, folder in (("sst2", own, "best-sst2"), ("rte", best, "best")):
        result = run_script("predict", ["--run", run, "--task", task, "--split", "dev", "--out", tmp_path / task])
        name = {"sst2": "SST-2", "rte": "RTE"}[task]
        score = f"{100 * entry['score']:.2f}"
        assert f"{name}: the model of {run / folder}" in result.output
        assert f"{name} dev: accuracy {score} (the record: accuracy {score} at step {entry['step']})" \
            in result.output
    # A run trained before each task's best model was kept: best/ predicts, and the line says so.
    shutil.rmtree(run / "best-sst2")
    result = run_script("predict", ["--run", run, "--task", "sst2", "--split", "dev", "--out", tmp_path / "old"])
    text = " ".join(result.output.split())
    assert f"Note: the report's SST-2 score (SST-2's best dev accuracy {100 * own['score']:.2f}, at step " \
           f"{own['step']}) comes from a model this run did not keep" in text
    at_best = next(h for h in record["history"] if h["step"] == best["step"])["metrics"]["sst2"]["accuracy"]
    assert f"(the record: accuracy {100 * at_best:.2f} at step {best['step']})" in text

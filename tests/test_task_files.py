"""Task files: what they may say, the data formats they read, and one clear error per mistake,
given before anything is written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from helpers import fails, finishes_within, nothing_written, tiny_args
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import get_task
from mtlvsift.train.data.glue import load_split
from mtlvsift.train.data.task_files import load_task_files, parse_task_file

ROWS = [("a", "good fine", "pos"), ("b", "bad sad", "neg"), ("c", "nice happy", "pos"),
        ("d", "dull grim", "neg")]


def write_csv(path: Path, rows, header=("id", "review", "sentiment")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sentiment_task(**changes) -> dict:
    """A valid task entry (files train.csv and dev.csv), with keys changed or (None) removed."""
    entry = {"name": "mysent", "train": "train.csv", "dev": "dev.csv", "text": ["review"],
             "label": "sentiment", "labels": ["neg", "pos"]}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def write_task_file(folder: Path, *entries: dict, name: str = "tasks.yaml") -> Path:
    """The entries as a task file, next to train.csv and dev.csv (ROWS) unless they exist."""
    for split in ("train", "dev"):
        if not (folder / f"{split}.csv").exists():
            write_csv(folder / f"{split}.csv", ROWS)
    path = folder / name
    text = json.dumps({"tasks": list(entries)}) if name.endswith(".json") else \
        yaml.safe_dump({"tasks": list(entries)}, sort_keys=False)
    path.write_text(text)
    return path


def train_fails(tiny_model, tiny_glue, tmp_path, task_file: Path, *expected: str) -> None:
    """train_stilts on the task file's mysent fails with ``expected``, writing nothing."""
    out = tmp_path / "out"
    fails("train_stilts", ["--target", "mysent", "--task-file", task_file,
                           *tiny_args(tiny_model, tiny_glue, out, epochs=1)], *expected)
    assert nothing_written(out)


# --------------------------------------------------------------------------- one test per mistake


def test_unknown_key_lists_the_valid_keys(tiny_model, tiny_glue, tmp_path):
    task_file = write_task_file(tmp_path, sentiment_task(labels=None, lables=["neg", "pos"]))
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, str(task_file), "task 'mysent'",
                "unknown key 'lables'", "Valid keys: name, train, dev, test, hub, text, label, labels")


def test_missing_data_file_names_where_it_was_looked_for(tiny_model, tiny_glue, tmp_path):
    task_file = write_task_file(tmp_path, sentiment_task(dev="data/dev.csv"))
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, "the dev file data/dev.csv is not found",
                str(tmp_path / "data" / "dev.csv"), "relative to the task file")


def test_missing_column_lists_the_columns_found(tiny_model, tiny_glue, tmp_path):
    task_file = write_task_file(tmp_path, sentiment_task(text=["sentence"]))
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, str(tmp_path / "train.csv"),
                "has no column 'sentence'", "columns found: id, review, sentiment")


def test_label_not_in_the_list_names_the_first_offending_row(tiny_model, tiny_glue, tmp_path):
    rows = ROWS[:2] + [("x", "so so", "meh"), ("y", "hmm", "unsure")] + ROWS[2:]
    write_csv(tmp_path / "train.csv", rows)
    task_file = write_task_file(tmp_path, sentiment_task())
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, f"{tmp_path / 'train.csv'}: line 4",
                "label 'meh' is not in the labels of task 'mysent' (neg, pos)")


def test_regression_label_that_is_not_a_number(tiny_model, tiny_glue, tmp_path):
    lines = [{"text": "a b", "score": 1.5}, {"text": "c", "score": "high"}, {"text": "d", "score": 2}]
    (tmp_path / "scores.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    task_file = write_task_file(tmp_path, sentiment_task(
        train="scores.jsonl", dev="scores.jsonl", text="text", label="score", labels=None,
        regression=True))
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, f"{tmp_path / 'scores.jsonl'}: line 2",
                "label 'high' is not a number", "is a regression")


def test_name_that_clashes_with_a_glue_task(tiny_model, tiny_glue, tmp_path):
    task_file = write_task_file(tmp_path, sentiment_task(name="sst_2"))
    train_fails(tiny_model, tiny_glue, tmp_path, task_file,
                "the name clashes with the GLUE task SST-2; choose another name")


def test_empty_split(tiny_model, tiny_glue, tmp_path):
    write_csv(tmp_path / "dev.csv", [])
    task_file = write_task_file(tmp_path, sentiment_task())
    train_fails(tiny_model, tiny_glue, tmp_path, task_file, str(tmp_path / "dev.csv"),
                "has no rows: the dev split of task 'mysent' is empty")


# --------------------------------------------------------------------------- what a file may say


@pytest.mark.parametrize("changes, expected", [
    ({"name": "My-Task"}, "`name` must be lower-case letters, digits and underscores"),
    ({"text": ["a", "b", "c"]}, "`text` is one or two column names"),
    ({"labels": ["pos"]}, "at least two"),
    ({"labels": ["pos", "pos"]}, "lists a label twice"),
    ({"regression": True}, "give `labels` (classification) or `regression: true`, not both"),
    ({"metrics": ["bleu"]}, "unknown metric 'bleu' for a classification task"),
    ({"metrics": ["spearman"]}, "unknown metric 'spearman'"),
    ({"labels": ["a", "b", "c"], "metrics": ["f1"]}, "with 3 labels use f1_macro"),
    ({"metrics": ["accuracy"], "main_metric": "f1"}, "`main_metric` must be one of its metrics (accuracy)"),
    ({"metrics": ["my_metric.py"]}, "the evaluate module my_metric.py is not found"),
    ({"train": "train.txt"}, "unknown format"),
    ({"train": None}, "`train` (a data file) is required, or `hub`"),
    ({"hub": {"path": "x/y", "splits": {"train": "train", "dev": "validation"}}},
     "give data files (train, dev, test) or `hub`, not both"),
    ({"label": ["sentiment"]}, "`label` (a column name) is required"),
])
def test_each_mistake_in_a_task_gets_its_message(tmp_path, changes, expected):
    task_file = write_task_file(tmp_path, sentiment_task(**changes))
    with pytest.raises(MtlvsiftError) as err:
        parse_task_file(task_file)
    assert expected in str(err.value) and str(task_file) in str(err.value)


def test_file_level_mistakes(tmp_path):
    bad = tmp_path / "bad.yaml"
    for text, expected in (("tasks: [", "is not valid YAML"), ("- name: x\n", "holds `tasks:`"),
                           ("tasks: []\n", "holds `tasks:`"), ("tasks: [1]\nextra: 2\n", "unknown key 'extra'")):
        bad.write_text(text)
        with pytest.raises(MtlvsiftError) as err:
            parse_task_file(bad)
        assert expected in str(err.value)
    (tmp_path / "tasks.txt").write_text("tasks: []")
    with pytest.raises(MtlvsiftError, match="YAML .* or JSON"):
        parse_task_file(tmp_path / "tasks.txt")
    first = write_task_file(tmp_path, sentiment_task())
    second = write_task_file(tmp_path, sentiment_task(), name="more.json")
    with pytest.raises(MtlvsiftError, match="defined twice"):
        load_task_files([first, second])


def test_yaml_and_json_define_the_same_task_and_yes_no_stay_labels(tmp_path):
    write_csv(tmp_path / "train.csv", [("a", "x", "yes"), ("b", "y", "no")])
    write_csv(tmp_path / "dev.csv", [("a", "x", "no")])
    entry = sentiment_task(labels=["yes", "no"], metrics=["accuracy", "f1", "mcc"], main_metric="mcc")
    from_yaml = parse_task_file(write_task_file(tmp_path, entry))
    # YAML 1.1 would read yes/no as booleans; task files keep them as the labels they are.
    (tmp_path / "plain.yaml").write_text((tmp_path / "tasks.yaml").read_text().replace("- 'yes'", "- yes")
                                         .replace("- 'no'", "- no"))
    assert "- yes" in (tmp_path / "plain.yaml").read_text()
    from_plain = parse_task_file(tmp_path / "plain.yaml")
    from_json = parse_task_file(write_task_file(tmp_path, entry, name="tasks.json"))
    for tasks in (from_plain, from_json):
        assert [t.label_names for t in tasks] == [t.label_names for t in from_yaml] == [("yes", "no")]
        assert tasks[0].metrics == ("accuracy", "f1", "mcc") and tasks[0].main_metric == "mcc"
    assert from_yaml[0].source.task_file_sha256 != from_json[0].source.task_file_sha256


def test_every_format_reads_the_same_examples(tmp_path):
    rows = [{"id": i, "review": text, "sentiment": label} for i, (_, text, label) in enumerate(ROWS)]
    write_csv(tmp_path / "d.csv", [(r["id"], r["review"], r["sentiment"]) for r in rows])
    (tmp_path / "d.tsv").write_text("id\treview\tsentiment\n" + "".join(
        f"{r['id']}\t{r['review']}\t{r['sentiment']}\n" for r in rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "d.parquet")
    expected = {"text_a": ["good fine", "bad sad", "nice happy", "dull grim"], "label": [1.0, 0.0, 1.0, 0.0]}
    for ext in ("csv", "tsv", "jsonl", "json", "parquet"):
        load_task_files([write_task_file(tmp_path, sentiment_task(train=f"d.{ext}", dev=f"d.{ext}"))])
        assert load_split(get_task("mysent"), "train", None).to_dict() == expected, ext


def test_numeric_labels_match_whatever_their_type(tmp_path):
    rows = [{"t": "a", "y": 1}, {"t": "b", "y": 0.0}, {"t": "c", "y": "1"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task_file = write_task_file(tmp_path, sentiment_task(train="d.jsonl", dev="d.jsonl", text=["t"],
                                                         label="y", labels=[0, 1]))
    load_task_files([task_file])
    assert load_split(get_task("mysent"), "dev", None)["label"] == [1.0, 0.0, 1.0]


def test_hub_source_fails_offline_with_one_message(tmp_path):
    task_file = write_task_file(tmp_path, {
        "name": "myhub", "hub": {"path": "some-org/no-such-dataset", "name": None,
                                 "splits": {"train": "train", "dev": "validation"}},
        "text": ["premise", "hypothesis"], "label": "label", "labels": ["yes", "no"]})
    (task,) = load_task_files([task_file])
    assert task.source.hub_path == "some-org/no-such-dataset" and task.is_pair
    with pytest.raises(MtlvsiftError) as err:
        load_split(task, "train", None)
    message = str(err.value)
    assert "Could not load task 'myhub' from the Hugging Face hub (some-org/no-such-dataset" in message
    assert "save the data as files" in message and str(task_file) in message


def test_the_readme_task_file_is_valid(tmp_path):
    from helpers import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Your own task"):]
    text = section[section.index("```yaml\n") + 8:section.index("```\n")]
    (tmp_path / "data").mkdir()
    for name in ("train", "dev", "test"):
        write_csv(tmp_path / "data" / f"{name}.csv", ROWS)
    for name in ("pairs_train", "pairs_dev"):
        (tmp_path / "data" / f"{name}.jsonl").write_text('{"first": "a", "second": "b", "score": 1}\n')
    (tmp_path / "my_tasks.yaml").write_text(text)
    sent, similarity, hub = load_task_files([tmp_path / "my_tasks.yaml"])
    assert (sent.metrics, sent.main_metric, sent.source.id_column) == (("accuracy", "f1"), "f1", "id")
    assert similarity.is_regression and similarity.main_metric == "spearman"
    assert hub.label_names == ("yes", "no") and hub.source.hub_path == "some/dataset"
    assert len(load_split(sent, "dev", None)) == len(ROWS)
    for script in ("train_stilts", "train_mtl", "train_mtl_all", "compare", "predict"):
        assert f"scripts/{script}.py" in section and (REPO_ROOT / "scripts" / f"{script}.py").is_file()


# --------------------------------------------------------------------------- what is not a task file (issue 24)

def test_a_named_pipe_or_a_device_is_refused_before_it_is_opened(tmp_path):
    import os

    fifo = tmp_path / "tasks.yaml"
    os.mkfifo(fifo)
    error = finishes_within(10, lambda: load_task_files([fifo]), fifo)
    assert isinstance(error, MtlvsiftError), error
    assert f"The task file {fifo} is a named pipe, not a regular file" in str(error)
    error = finishes_within(10, lambda: load_task_files(["/dev/zero"]))
    assert "The task file /dev/zero is a device, not a regular file" in str(error)
    # The same for a data file the task file names.
    folder = tmp_path / "data"
    folder.mkdir()
    os.mkfifo(folder / "train.csv")
    task_file = write_task_file(folder, sentiment_task())
    error = finishes_within(10, lambda: load_task_files([task_file]), folder / "train.csv")
    assert "the train file train.csv is a named pipe, not a regular file" in str(error)


def test_a_named_pipe_as_task_file_does_not_block_help(tmp_path):
    import os

    from helpers import run_script

    fifo = tmp_path / "tasks.yaml"
    os.mkfifo(fifo)
    result = finishes_within(20, lambda: run_script("train_stilts", ["--task-file", fifo, "--help"],
                                                    expect_ok=False), fifo)
    assert result.exit_code == 1 and "is a named pipe, not a regular file" in result.output


def test_a_huge_task_file_is_refused_by_its_size(tmp_path):
    huge = tmp_path / "tasks.yaml"
    huge.write_text("tasks:\n" + "#" * 2**21 + "\n")
    with pytest.raises(MtlvsiftError, match="is larger than 1 MiB"):
        parse_task_file(huge)


def test_a_binary_parquet_text_column_is_read_as_utf8_text(tmp_path):
    import pyarrow
    import pyarrow.parquet

    table = pyarrow.table({"review": pyarrow.array([b"good fine", "caf\u00e9 nice".encode()], pyarrow.binary()),
                           "sentiment": ["pos", "pos"]})
    pyarrow.parquet.write_table(table, tmp_path / "d.parquet")
    load_task_files([write_task_file(tmp_path, sentiment_task(train="d.parquet", dev="d.parquet"))])
    assert load_split(get_task("mysent"), "train", None)["text_a"] == ["good fine", "caf\u00e9 nice"]
    bad = pyarrow.table({"review": pyarrow.array([b"good", b"\xff\xfe"], pyarrow.binary()),
                         "sentiment": ["pos", "neg"]})
    pyarrow.parquet.write_table(bad, tmp_path / "bad.parquet")
    load_task_files([write_task_file(tmp_path, sentiment_task(train="bad.parquet", dev="d.parquet"))])
    with pytest.raises(MtlvsiftError, match="row 2: column 'review' holds bytes that are not UTF-8 text"):
        load_split(get_task("mysent"), "train", None)


def test_a_cell_beyond_the_limit_is_named_as_such(tmp_path):
    from mtlvsift.train.data.user_data import MAX_LINE_LENGTH

    long = "a" * 200_000  # beyond csv's default limit (131,072), well within ours
    write_csv(tmp_path / "long.csv", [("a", long, "pos")])
    load_task_files([write_task_file(tmp_path, sentiment_task(train="long.csv"))])
    assert load_split(get_task("mysent"), "train", None)["text_a"] == [long]
    (tmp_path / "huge.csv").write_text('id,review,sentiment\na,"' + "a" * (MAX_LINE_LENGTH + 1) + '",pos\n')
    load_task_files([write_task_file(tmp_path, sentiment_task(train="huge.csv"))])
    with pytest.raises(MtlvsiftError, match="line 2: has a cell longer than 16 MiB"):
        load_split(get_task("mysent"), "train", None)


def test_the_readme_says_a_metric_module_runs_in_the_training_process():
    from helpers import REPO_ROOT

    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    section = readme[readme.index("## Your own task"):readme.index("## Predictions")]
    assert "is Python code, and it runs in the training process" in section
    assert "Use only modules you trust" in section

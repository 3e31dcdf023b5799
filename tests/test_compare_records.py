"""compare.py's input side: discovery of run records, bad files, runs in progress."""

from __future__ import annotations

import json

import pytest
from synthetic import write_in_progress, write_record

from mtlvsift.errors import MtlvsiftError
from mtlvsift.run_index import discover, require_records
from mtlvsift.run_record import read_record
from mtlvsift.report.stats import analyze


def test_reads_the_fields_not_the_folder_names(tmp_path):
    path = write_record(tmp_path, "mtl", "rte", ["mnli"], seed=3, score=0.71,
                        task_scores={"rte": 0.71, "mnli": 0.82}, folder="renamed-by-hand")
    rec = read_record(path)
    assert (rec.method, rec.target, rec.support, rec.seed) == ("mtl", "rte", ("mnli",), 3)
    assert rec.score == 0.71 and rec.task_scores == {"rte": 0.71, "mnli": 0.82}
    assert rec.train_sizes == {"rte": 2490, "mnli": 392702}


def test_in_progress_runs_are_listed_and_model_folders_are_not_runs(tmp_path):
    done = write_record(tmp_path, "single", "rte", seed=0).parent
    (done / "best").mkdir()
    (done / "best" / "config.json").write_text("{}")  # a saved model's config, not a run
    running = write_in_progress(tmp_path, "mtl", "rte--mnli", seed=1)
    found = discover(tmp_path)
    assert [r.path.parent for r in found.records] == [done]
    assert [r.path for r in found.in_progress] == [running]
    assert found.in_progress[0].age().endswith("ago")
    assert found.warnings == []


@pytest.mark.parametrize("content, reason", [
    ('{"schema": 1, "method": "single", "target": "rte", "seed"', "not valid JSON"),
    ("\x00\x01garbage", "not valid JSON"),
    ('{"loss": [0.1, 0.2]}', "not a mtlvsift run record"),
    ('{"schema": 7, "method": "single"}', "schema 7"),
    ('{"schema": 1, "method": "single", "target": "rte", "seed": 0, "model": "m", '
     '"best": {"score": NaN}}', "best.score"),
    pytest.param("[" * 100_000 + "]" * 100_000, "RecursionError", id="nested"),
    pytest.param('{"schema": 1, "method": "single", "seed": ' + "[" * 50_000 + "]" * 50_000 + "}",
                 "RecursionError", id="nested-field"),
    pytest.param('{"schema": 1, "seed": ' + "9" * 5000 + "}", "ValueError", id="huge-number"),
])
def test_bad_result_json_gives_one_warning_naming_the_file(tmp_path, content, reason):
    write_record(tmp_path, "single", "rte", seed=0)
    bad = tmp_path / "single" / "rte" / "seed-1" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    found = discover(tmp_path)
    assert len(found.records) == 1
    assert len(found.warnings) == 1
    assert str(bad) in found.warnings[0] and reason in found.warnings[0]


def test_half_written_copy_of_a_real_record_is_skipped(tmp_path):
    good = write_record(tmp_path, "stilts", "rte", ["mnli"], seed=0)
    text = good.read_text()
    half = tmp_path / "stilts" / "rte--mnli-copy" / "seed-0" / "result.json"
    half.parent.mkdir(parents=True)
    half.write_text(text[: len(text) // 2])
    found = discover(tmp_path)
    assert [r.path for r in found.records] == [good]
    assert len(found.warnings) == 1 and str(half) in found.warnings[0]


def test_no_records_is_one_clear_error(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(MtlvsiftError) as err:
            require_records(discover(root))
        message = err.value.format_message()
        assert str(root.resolve()) in message
        assert "scripts/train_stilts.py" in message


def test_only_unfinished_runs_says_so(tmp_path):
    write_in_progress(tmp_path, "single", "rte", seed=0)
    with pytest.raises(MtlvsiftError, match="1 run\\(s\\) have started but not finished"):
        require_records(discover(tmp_path))


def test_a_seed_read_twice_is_kept_once_with_a_warning(tmp_path):
    write_record(tmp_path, "stilts", "rte", ["mnli"], seed=0, score=0.70)
    write_record(tmp_path, "stilts", "rte", ["mnli"], seed=0, score=0.60, folder="rte--mnli-old")
    found = discover(tmp_path)
    analysis = analyze(found.records, "distilroberta-base")
    assert analysis.cell("rte", "mnli").stilts.scores == [0.60]  # the first path in sort order
    assert len(analysis.warnings) == 1 and "seed 0" in analysis.warnings[0]


def test_mtl_all_reads_each_task_from_best_by_task(tmp_path):
    path = write_record(tmp_path, "mtl_all", None, (), seed=0, score=None, sampling="size",
                        task_scores={"rte": 0.6, "mnli": 0.8, "cola": 0.5})
    raw = json.loads(path.read_text())
    assert raw["best"]["score"] != 0.6  # best is by the mean; each task has its own best
    rec = read_record(path)
    assert rec.target is None and rec.task_scores == {"rte": 0.6, "mnli": 0.8, "cola": 0.5}


def _edited(path, **fields):
    """Rewrite fields of a result.json as a hand (or an attacker) would."""
    raw = json.loads(path.read_text())
    for key, value in fields.items():
        target = raw
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("field, value, reason", [
    ("sampling", "x\ntouch SOMEFILE\n#", "'sampling'"),
    ("batching", "diagonal", "'batching'"),
    ("target", "rte; touch SOMEFILE", "not a task name"),
    ("support", ["mnli; touch SOMEFILE"], "not a task name"),
    ("tasks", ["rte", 7], "not a task name"),
    ("model", "org/model\n# hidden", "'model'"),
    ("variant", "tf-0.5`touch x`", "'variant'"),
    ("seed", -1, "'seed'"),
    ("best.score", -5, "'best.score' is -5, not a rte score in [0, 1]"),
    ("best.score", 67, "'best.score' is 67"),
    ("best.score", float("nan"), "'best.score' is nan"),
    ("best_by_task.mnli.score", 82.0, "mnli's score in 'best_by_task' is 82.0, not a mnli score"),
])
def test_a_field_outside_its_allowed_values_skips_the_record(tmp_path, field, value, reason):
    good = write_record(tmp_path, "mtl", "rte", ["mnli"], seed=0, task_scores={"rte": 0.7, "mnli": 0.8})
    bad = _edited(write_record(tmp_path, "mtl", "rte", ["mnli"], seed=1,
                               task_scores={"rte": 0.7, "mnli": 0.8}), **{field: value})
    found = discover(tmp_path)
    assert [r.path for r in found.records] == [good]
    assert len(found.warnings) == 1
    assert str(bad) in found.warnings[0] and reason in found.warnings[0], found.warnings
    assert "\n" not in found.warnings[0]


def test_runs_are_found_only_in_method_name_seed_folders(tmp_path):
    runs = [write_record(tmp_path, "stilts", "rte", ["mnli"], seed=s) for s in range(2)]
    running = write_in_progress(tmp_path, "mtl", "rte--mnli", seed=0)
    modern = write_record(tmp_path / "my-model", "single", "rte", seed=0)  # <outputs>/<model>/...
    stray = write_record(tmp_path / "elsewhere" / "copy", "single", "rte", seed=0)
    # Stray files above the run folders used to hide every run below them.
    for folder in (tmp_path, tmp_path / "stilts", tmp_path / "stilts" / "rte--mnli"):
        (folder / "config.json").write_text("{}")
        (folder / "result.json").write_text("not a record")
    (tmp_path / "stilts" / "rte--mnli" / "seed-x").mkdir()
    (tmp_path / "stilts" / "rte--mnli" / "seed-x" / "result.json").write_text("not a record")
    found = discover(tmp_path)
    assert [r.path for r in found.records] == [modern, *runs]
    assert [r.path for r in found.in_progress] == [running]
    assert found.warnings == [] and stray.exists()


def test_a_negative_correlation_is_a_score(tmp_path):
    """CoLA's MCC and STS-B's Spearman lie in [-1, 1]: a poor run's negative score is valid."""
    cola = write_record(tmp_path, "single", "cola", seed=0, score=-0.05)
    stsb = write_record(tmp_path, "mtl", "stsb", ["cola"], seed=0, task_scores={"stsb": -0.2, "cola": -1.0})
    _edited(write_record(tmp_path, "single", "cola", seed=1), **{"best.score": -1.5})
    found = discover(tmp_path)
    assert [r.path for r in found.records] == [stsb, cola]  # sorted by path
    assert len(found.warnings) == 1 and "not a cola score in [-1, 1]" in found.warnings[0]


def test_a_task_file_task_is_read_with_the_metric_its_record_names(tmp_path):
    """Task-file tasks (tasks.USER_TASK_NAME) pass the record checks: their scores are bounded by
    the main metric the record names; a local evaluate module's key may be any finite number."""
    good = write_record(tmp_path, "mtl", "mysent", ["rte"], seed=0,
                        task_scores={"mysent": 0.7, "rte": 0.6})
    module = _edited(write_record(tmp_path, "mtl", "mysent", ["rte"], seed=1,
                                  task_scores={"mysent": 0.7, "rte": 0.6}),
                     **{"best.metric": "neg_mse", "best.score": -3.5,
                        "best_by_task.mysent.metric": "neg_mse", "best_by_task.mysent.score": -3.5})
    corr = _edited(write_record(tmp_path, "single", "myscore", seed=0, score=0.5),
                   **{"best_by_task.myscore.metric": "pearson", "best_by_task.myscore.score": -0.4,
                      "best.score": -0.4})
    points = _edited(write_record(tmp_path, "mtl", "mysent", ["rte"], seed=2,
                                  task_scores={"mysent": 0.7, "rte": 0.6}),
                     **{"best_by_task.mysent.score": 70.0})
    bad_name = _edited(write_record(tmp_path, "mtl", "mysent", ["rte"], seed=3,
                                    task_scores={"mysent": 0.7, "rte": 0.6}), target="My-Sent!")
    found = discover(tmp_path)
    assert [r.path for r in found.records] == [good, module, corr]
    record = read_record(module)
    assert record.main_metrics["mysent"] == "neg_mse" and record.score == -3.5
    assert read_record(good).task_scores == {"mysent": 0.7, "rte": 0.6}
    assert read_record(corr).main_metrics == {"myscore": "pearson"}
    assert len(found.warnings) == 2
    assert str(points) in found.warnings[0] and "not a mysent score in [0, 1]" in found.warnings[0]
    assert str(bad_name) in found.warnings[1] and "not a task name" in found.warnings[1]


# Start models and single-task scores that a trainer never writes (read_record passes them on).
HOSTILE_PREREQUISITES = [
    pytest.param("stilts", "start_model", {"run": "single/mnli/seed-0", "seed": {"a": 1}, "score": 0.8},
                 "start_model", id="start-model-seed-object"),
    pytest.param("stilts", "start_model", {"run": "single/mnli/seed-0", "seed": 0, "score": [0.8]},
                 "start_model", id="start-model-score-list"),
    pytest.param("mtl", "single_scores", {"rte": "high", "mnli": 0.8}, "single_scores",
                 id="single-scores-string"),
    pytest.param("mtl", "single_scores", {"rte": [0.7], "mnli": 0.8}, "single_scores",
                 id="single-scores-list"),
]


def _hostile_prerequisite_tree(root, method, key, value):
    """Seed 0 a valid record; seed 1 the same run whose ``key`` holds ``value``."""
    good = {"start_model": {"run": "single/mnli/seed-0", "seed": 0, "score": 0.8},
            "single_scores": {"rte": 0.7, "mnli": 0.8}}[key]
    write_record(root, method, "rte", ["mnli"], 0, 0.7, **{key: good})
    return _edited(write_record(root, method, "rte", ["mnli"], 1, 0.7, **{key: good}), **{key: value})


def _compare(root):
    import io

    from rich.console import Console

    from mtlvsift.report.compare import compare

    out, err = io.StringIO(), io.StringIO()
    compare(root, console=Console(file=out, width=200), err_console=Console(file=err, width=400))
    return out.getvalue(), err.getvalue()


@pytest.mark.parametrize("method, key, value, field", HOSTILE_PREREQUISITES)
def test_a_hostile_start_model_or_single_scores_never_stops_the_report(tmp_path, method, key, value,
                                                                      field):
    _hostile_prerequisite_tree(tmp_path, method, key, value)
    _compare(tmp_path)  # no traceback
    assert (tmp_path / "report" / "report.md").exists()


@pytest.mark.parametrize("method, key, value, field", HOSTILE_PREREQUISITES)
def test_a_hostile_start_model_or_single_scores_skips_the_record(tmp_path, method, key, value, field):
    bad = _hostile_prerequisite_tree(tmp_path, method, key, value)
    found = discover(tmp_path)
    assert [r.seed for r in found.records] == [0]
    assert len(found.warnings) == 1 and str(bad) in found.warnings[0] and field in found.warnings[0]
    _, warnings = _compare(tmp_path)
    assert str(bad) in " ".join(warnings.split()) and (tmp_path / "report" / "report.md").exists()


def test_the_record_is_one_typed_structure_written_and_read_whole(tmp_path):
    """RunRecord's fields are exactly what result.json holds (one list, each with its check):
    what a trainer writes reads back field for field."""
    import dataclasses
    import json

    from mtlvsift.run_record import RunRecord

    path = write_record(tmp_path, "stilts", "rte", ["mnli"], 0, 0.7,
                        start_model={"run": "single/mnli/seed-0", "seed": 0, "score": 0.8, "seeds": [0]})
    written = json.loads(path.read_text())
    fields = [f.name for f in dataclasses.fields(RunRecord) if f.name != "path"]
    assert list(written) == ["schema", *fields]
    assert all("check" in f.metadata for f in dataclasses.fields(RunRecord) if f.name != "path")
    record = read_record(path)
    assert record.to_json() == written
    assert record.start_model_key == ("single/mnli/seed-0", 0, 0.8) and record.score == 0.7

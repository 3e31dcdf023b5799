"""GLUE metrics against values computed by hand from their textbook formulas."""

from __future__ import annotations

import json
import math
import warnings

import evaluate
import numpy as np
import pytest

from mtlvsift.train.evaluation.metrics import (GLUE_METRIC_PATH, compute_task_metrics, load_glue_metric, logits_to_predictions)
from mtlvsift.errors import MtlvsiftError
from mtlvsift.tasks import GLUE_TASKS, get_task

# refs/preds with tp=3, fn=1, tn=2, fp=2
REFS = [1, 1, 1, 0, 0, 0, 1, 0]
PREDS = [1, 0, 1, 0, 1, 0, 1, 1]
TP, FN, TN, FP = 3, 1, 2, 2


def pearson_by_hand(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def test_mcc_from_confusion_matrix():
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    got = compute_task_metrics(get_task("cola"), {"dev": (np.array(PREDS), np.array(REFS))})
    assert got == {"mcc": pytest.approx(expected)}
    assert expected == pytest.approx(4 / math.sqrt(240))


@pytest.mark.parametrize("name", ["mrpc", "qqp"])
def test_accuracy_f1_and_mean(name):
    precision, recall = TP / (TP + FP), TP / (TP + FN)
    f1 = 2 * precision * recall / (precision + recall)
    accuracy = (TP + TN) / len(REFS)
    got = compute_task_metrics(get_task(name), {"dev": (np.array(PREDS), np.array(REFS))})
    assert got == {"accuracy": pytest.approx(accuracy), "f1": pytest.approx(f1),
                   "acc_f1_mean": pytest.approx((accuracy + f1) / 2)}
    assert get_task(name).main_score(got) == pytest.approx((5 / 8 + 2 / 3) / 2)


@pytest.mark.parametrize("name", ["sst2", "qnli", "rte", "wnli"])
def test_accuracy_with_float_references(name):
    # The datasets store labels as float32; the metric must still compare class ids.
    refs = np.array(REFS, dtype=np.float32)
    got = compute_task_metrics(get_task(name), {"dev": (np.array(PREDS), refs)})
    assert got == {"accuracy": pytest.approx(5 / 8)}


def test_pearson_and_spearman_with_ties():
    preds = [1.0, 2.0, 2.0, 4.0, 3.5]
    refs = [0.5, 1.0, 3.0, 3.0, 5.0]
    # Average ranks, ties sharing the mean of their positions.
    pred_ranks = [1, 2.5, 2.5, 5, 4]
    ref_ranks = [1, 2, 3.5, 3.5, 5]
    got = compute_task_metrics(get_task("stsb"), {"dev": (np.array(preds), np.array(refs))})
    assert got == {"pearson": pytest.approx(pearson_by_hand(preds, refs), rel=1e-5),
                   "spearman": pytest.approx(pearson_by_hand(pred_ranks, ref_ranks), rel=1e-5)}
    assert get_task("stsb").main_score(got) == got["spearman"]


def test_mnli_mismatched_gets_prefix():
    mnli = get_task("mnli")
    got = compute_task_metrics(mnli, {
        "dev_matched": (np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])),
        "dev_mismatched": (np.array([0, 1]), np.array([1, 1])),
    })
    assert got == {"accuracy": 0.75, "mm_accuracy": 0.5}
    assert mnli.main_score(got) == 0.75
    with pytest.raises(ValueError, match="no dev split"):
        compute_task_metrics(mnli, {"dev": (np.array([0]), np.array([0]))})


def test_constant_predictions_score_zero_not_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning leaks out either
        refs = np.array([0, 1, 0, 1])
        stsb = compute_task_metrics(get_task("stsb"), {"dev": (np.full(4, 2.5), refs * 2.5)})
        cola = compute_task_metrics(get_task("cola"), {"dev": (np.ones(4), refs)})
        mrpc = compute_task_metrics(get_task("mrpc"), {"dev": (np.zeros(4), refs)})
    assert stsb == {"pearson": 0.0, "spearman": 0.0}
    assert cola == {"mcc": 0.0}
    assert mrpc == {"accuracy": 0.5, "f1": 0.0, "acc_f1_mean": 0.25}


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_every_task_returns_its_metric_names_as_floats(name):
    task = get_task(name)
    dtype = float if task.is_regression else int
    outputs = {
        split: (np.array([0, 1, 1, 0], dtype=dtype), np.array([0, 1, 0, 1], dtype=dtype))
        for split in ["dev"] if len(task.dev_splits) == 1
    } or {"dev_matched": (np.array([0, 1]), np.array([0, 1])),
          "dev_mismatched": (np.array([0, 1]), np.array([0, 1]))}
    got = compute_task_metrics(task, outputs)
    expected = set(task.metrics) | {"mm_" + m for m in task.metrics if len(task.dev_splits) == 2}
    assert set(got) == expected
    assert all(type(v) is float and -1.0 <= v <= 1.0 for v in got.values())
    assert task.main_metric in got


def test_metric_module_is_cached_and_local():
    task = get_task("rte")
    assert load_glue_metric(task) is load_glue_metric(task)
    assert load_glue_metric(task).config_name == "rte"
    assert GLUE_METRIC_PATH.is_file()
    with pytest.raises(KeyError, match="Unknown GLUE metric config"):
        evaluate.load(str(GLUE_METRIC_PATH), config_name="squad", keep_in_memory=True)


def test_logits_to_predictions():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert logits_to_predictions(get_task("mnli"), logits).tolist() == [1, 0]
    scores = logits_to_predictions(get_task("stsb"), np.array([[1.5], [4.25]]))
    assert scores.shape == (2,) and scores.tolist() == [1.5, 4.25]


def own_task(tmp_path, metrics, main=None, labels=("neg", "pos"), regression=False):
    """A task-file task with these metrics (local module paths relative to ``tmp_path``)."""
    from mtlvsift.train.data.task_files import parse_task_file

    for split in ("train", "dev"):
        (tmp_path / f"{split}.csv").write_text("t,y\na,neg\n")
    entry = {"name": "mine", "train": "train.csv", "dev": "dev.csv", "text": ["t"], "label": "y",
             "metrics": list(metrics)}
    entry.update({"regression": True} if regression else {"labels": list(labels)})
    if main:
        entry["main_metric"] = main
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [entry]}))
    return parse_task_file(tmp_path / "tasks.json")[0]


def test_task_file_metrics_by_name(tmp_path):
    precision, recall = TP / (TP + FP), TP / (TP + FN)
    mcc = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    task = own_task(tmp_path, ["f1", "accuracy", "mcc"])
    got = compute_task_metrics(task, {"dev": (np.array(PREDS), np.array(REFS, dtype=np.float32))})
    assert got == {"f1": pytest.approx(2 * precision * recall / (precision + recall)),
                   "accuracy": pytest.approx(5 / 8), "mcc": pytest.approx(mcc)}
    assert task.main_metric == "f1" and task.main_score(got) == got["f1"]
    three = own_task(tmp_path, ["f1_macro"], labels=("a", "b", "c"))
    # Class F1s: class 0 (tp 1, fp 1, fn 1) 0.5; class 1 (tp 1, fp 0, fn 0) 1; class 2 (tp 0) 0.
    got = compute_task_metrics(three, {"dev": (np.array([0, 1, 0, 2]), np.array([0, 1, 2, 0]))})
    assert got == {"f1_macro": pytest.approx((0.5 + 1 + 0) / 3)}
    regression = own_task(tmp_path, ["pearson"], regression=True)
    preds, refs = [1.0, 2.0, 2.5, 4.0], [1.5, 1.0, 3.0, 5.0]
    got = compute_task_metrics(regression, {"dev": (np.array(preds), np.array(refs))})
    assert got == {"pearson": pytest.approx(pearson_by_hand(preds, refs), rel=1e-5)}


LOCAL_MODULE = '''
import datasets
import evaluate


class Exact(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="share of exact matches", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("int64"),
                                                               "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        hits = [p == r for p, r in zip(predictions, references)]
        return {"exact": sum(hits) / len(hits), "misses": len(hits) - sum(hits)}
'''


def test_a_local_evaluate_module_as_a_metric(tmp_path):
    (tmp_path / "exact.py").write_text(LOCAL_MODULE)
    task = own_task(tmp_path, ["./exact.py", "accuracy"], main="exact")
    got = compute_task_metrics(task, {"dev": (np.array(PREDS), np.array(REFS))})
    assert got == {"exact": 5 / 8, "misses": 3.0, "accuracy": 5 / 8}
    assert task.main_score(got) == 5 / 8
    with pytest.raises(MtlvsiftError, match="name `main_metric`"):
        own_task(tmp_path, ["./exact.py"])
    wrong = own_task(tmp_path, ["./exact.py"], main="exactness")
    with pytest.raises(MtlvsiftError, match="main_metric 'exactness' is not among the metrics computed "
                                            r"\(exact, misses\)"):
        compute_task_metrics(wrong, {"dev": (np.array(PREDS), np.array(REFS))})


def test_a_nan_main_metric_is_one_error_naming_the_module(tmp_path):
    (tmp_path / "nan_metric.py").write_text(LOCAL_MODULE.replace("sum(hits) / len(hits)", "float('nan')"))
    task = own_task(tmp_path, ["./nan_metric.py"], main="exact")
    with pytest.raises(MtlvsiftError, match="main metric 'exact' is nan \\(returned by the metric "
                                            f"module {tmp_path / 'nan_metric.py'}\\)"):
        compute_task_metrics(task, {"dev": (np.array(PREDS), np.array(REFS))})


def test_a_metric_module_that_cannot_be_imported_is_refused_when_the_task_file_is_read(tmp_path):
    (tmp_path / "needs_a_package.py").write_text("import no_such_package_for_mtlvsift\n" + LOCAL_MODULE)
    with pytest.raises(MtlvsiftError, match="the evaluate module ./needs_a_package.py cannot be loaded "
                                            r"\(ImportError: .*no_such_package_for_mtlvsift"):
        own_task(tmp_path, ["./needs_a_package.py"], main="exact")
    (tmp_path / "syntax.py").write_text("def (:\n")
    with pytest.raises(MtlvsiftError, match="the evaluate module ./syntax.py cannot be loaded"):
        own_task(tmp_path, ["./syntax.py"], main="exact")

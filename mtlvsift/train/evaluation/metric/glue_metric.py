"""GLUE metrics as an ``evaluate`` module, loaded from this local file (no hub access).

One config per GLUE task, named as in ``mtlvsift.tasks`` (mnli, qqp, qnli, sst2, cola, stsb, mrpc,
rte, wnli), and one per metric for the tasks of task files (accuracy, f1, f1_macro, mcc, pearson,
spearman; f1_macro is the unweighted mean of every class's F1). Metric names match each task's
``metrics``:

- cola: ``mcc`` (Matthews correlation)
- sst2, qnli, rte, wnli, mnli: ``accuracy``
- mrpc, qqp: ``accuracy``, ``f1`` (binary, positive class 1) and ``acc_f1_mean``
- stsb: ``pearson`` and ``spearman``

Correlations (Pearson, Spearman) are undefined for constant inputs and scipy returns NaN; an
untrained model predicts constants, and a NaN would break best-model selection (NaN compares
false with everything), so this module returns 0.0 wherever a correlation is NaN. MCC gets the
same treatment (sklearn already returns 0.0 there). F1 with no predicted or true positive is 0.0.

This file is self-contained on purpose: ``evaluate`` copies it into its module cache.
"""

from __future__ import annotations

import math
import warnings

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_DESCRIPTION = (
    "GLUE metrics (Wang et al., 2018) for the nine GLUE tasks; "
    "correlations of constant inputs score 0."
)
_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids (the score for stsb).
    references: gold class ids (the score for stsb).
Returns: a dict of python floats named as in the task's metrics (see the module docstring).
Example:
    >>> metric = evaluate.load("mtlvsift/metric/glue_metric.py", "mrpc")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0, 'acc_f1_mean': 1.0}
"""

# The metrics of each GLUE task; every other config is one metric of that name.
_GLUE = {"mnli": ("accuracy",), "qqp": ("accuracy", "f1"), "qnli": ("accuracy",),
         "sst2": ("accuracy",), "cola": ("mcc",), "stsb": ("pearson", "spearman"),
         "mrpc": ("accuracy", "f1"), "rte": ("accuracy",), "wnli": ("accuracy",)}
_REGRESSION = ("pearson", "spearman")
_CONFIGS = (*_GLUE, "accuracy", "f1", "f1_macro", "mcc", *_REGRESSION)


def _no_nan(value: float) -> float:
    """0.0 for an undefined (NaN) correlation, so that model selection can compare scores."""
    value = float(value)
    return 0.0 if math.isnan(value) else value


def _correlations(preds: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        # scipy warns about constant input and returns NaN; we map NaN to 0.0 instead.
        warnings.simplefilter("ignore")
        pearson = pearsonr(preds, refs)[0]
        spearman = spearmanr(preds, refs)[0]
    return {"pearson": _no_nan(pearson), "spearman": _no_nan(spearman)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GlueMetric(evaluate.Metric):
    """The GLUE metric of one task (the config name)."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGS:
            raise KeyError(
                f"Unknown GLUE metric config '{self.config_name}'; "
                f"choose one of {', '.join(_CONFIGS)}."
            )
        dtype = "float32" if self._metric_names()[0] in _REGRESSION else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}
            ),
            format="numpy",
        )

    def _metric_names(self) -> tuple[str, ...]:
        return _GLUE.get(self.config_name, (self.config_name,))

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        preds, refs = np.asarray(predictions), np.asarray(references)
        names = self._metric_names()
        if names[0] in _REGRESSION:
            scores = _correlations(preds.astype(np.float64), refs.astype(np.float64))
            return {name: scores[name] for name in names}
        results = {}
        for name in names:
            if name == "mcc":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results["mcc"] = _no_nan(matthews_corrcoef(refs, preds))
            elif name == "accuracy":
                results["accuracy"] = float(accuracy_score(refs, preds))
            else:  # f1 (binary, positive class 1) or f1_macro
                average = "binary" if name == "f1" else "macro"
                results[name] = float(f1_score(refs, preds, pos_label=1, average=average,
                                               zero_division=0.0))
        if self.config_name in ("mrpc", "qqp"):
            results["acc_f1_mean"] = (results["accuracy"] + results["f1"]) / 2
        return results

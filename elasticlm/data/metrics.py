"""Task metrics: GLUE-style classification/regression scores and the GLUE average.

All scores here are fractions in [0, 1] (correlations in [-1, 1]), computed with scikit-learn and
scipy; multiply by 100 for a table. SQuAD's exact match / F1 (0-100, as the official script reports
them) live in `elasticlm.data.squad.squad_metrics`.

Metric names (a `TaskSpec.metrics` entry is one of these):

    accuracy   fraction of predictions equal to the reference
    f1         binary F1 of the positive class (label id 1), as GLUE reports for MRPC and QQP
    macro_f1   unweighted mean of the per-class F1 (multi-class demo tasks)
    mcc        Matthews correlation coefficient (CoLA)
    pearson    Pearson correlation (STS-B, regression tasks)
    spearman   Spearman rank correlation (STS-B, regression tasks)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from elasticlm.errors import ElasticLMError

if TYPE_CHECKING:
    from elasticlm.data.spec import TaskSpec

METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda p, r: float(skm.accuracy_score(r, p)),
    "f1": lambda p, r: float(skm.f1_score(r, p, pos_label=1, average="binary", zero_division=0)),
    "macro_f1": lambda p, r: float(skm.f1_score(r, p, average="macro", zero_division=0)),
    "mcc": lambda p, r: float(skm.matthews_corrcoef(r, p)),
    "pearson": lambda p, r: float(stats.pearsonr(p, r)[0]),
    "spearman": lambda p, r: float(stats.spearmanr(p, r)[0]),
}


def _as_spec(task: "TaskSpec | str") -> "TaskSpec":
    if isinstance(task, str):
        from elasticlm.data.tasks import get_spec

        return get_spec(task)
    return task


def compute_metrics(task: "TaskSpec | str", predictions, references) -> dict[str, float]:
    """Score `predictions` against `references` with the task's metrics.

    Classification: predictions are label ids, shape (n,), or logits, shape (n, num_labels), which
    are arg-maxed. Regression: floats, shape (n,) or (n, 1). References: label ids / floats, (n,).
    Returns {metric name: value} in the order of `spec.metrics`.
    """
    spec = _as_spec(task)
    if spec.kind == "qa":
        raise ElasticLMError(f"task {spec.name}: use elasticlm.data.squad.squad_metrics for QA")
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if spec.kind == "classification":
        if preds.ndim == 2:  # (n, num_labels) logits
            preds = preds.argmax(axis=-1)
        preds = preds.astype(np.int64)
        refs = refs.astype(np.int64)
        if (refs < 0).any():
            raise ElasticLMError(
                f"task {spec.name}: references contain -1 (unlabelled rows, e.g. a GLUE test split); "
                f"score a labelled split such as dev"
            )
    else:
        if preds.ndim == 2:  # (n, 1) regression head output
            preds = preds[:, 0]
        preds = preds.astype(np.float64)
        refs = refs.astype(np.float64)
    if preds.shape != refs.shape:
        raise ElasticLMError(
            f"task {spec.name}: {preds.shape[0]} predictions but {refs.shape[0]} references"
        )
    if len(refs) == 0:
        raise ElasticLMError(f"task {spec.name}: no examples to score")
    return {name: METRICS[name](preds, refs) for name in spec.metrics}


def task_score(result: Mapping[str, float]) -> float:
    """One number per task: the mean of its metrics (GLUE's rule for MRPC, QQP and STS-B)."""
    values = [v for k, v in result.items() if k in METRICS]
    if not values:
        raise ElasticLMError(f"no known metric among {sorted(result)}")
    return float(np.mean(values))


def glue_average(results: Mapping[str, Mapping[str, float]]) -> float:
    """The GLUE average: each entry of `results` ({task: {metric: value}}) scores the mean of its
    metrics, and the average is the unweighted mean over entries.

    MNLI counts as the entries you pass: give `mnli-m` and `mnli-mm` separately to count both, as
    the ELM/EfficientBERT tables do (their "Avg" column averages the per-column scores).
    """
    if not results:
        raise ElasticLMError("glue_average: no task results given")
    return float(np.mean([task_score(r) for r in results.values()]))

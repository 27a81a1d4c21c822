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

`class_metrics` and `value_metrics` score a classification and a regression task (the task kinds'
scoring; `elasticlm.kinds.compute_metrics` picks one by the task's kind) and return {metric name:
value} in the order of `spec.metrics`:

    Classification: predictions are logits, shape (n, num_labels), which are arg-maxed, or class
    ids, shape (n,): integers (or bools, or floats that are whole numbers) in 0..num_labels-1.
    References: label ids in the same range, shape (n,).
    Regression: predictions are floats, shape (n,) or (n, 1); references are floats, shape (n,).

Inputs are checked; each of these raises `ElasticLMError` (never a NaN or a silently wrong score):
1-D classification predictions that are not whole numbers (probabilities or scores: pass the
(n, num_labels) logits or the arg-max ids), logits whose column count is not the task's number of
classes, ids out of range, -1 references (an unlabelled split), NaN or infinite predictions, other
shapes, mismatched lengths, no examples, and for regression fewer than 2 examples or constant
references (Pearson and Spearman are undefined for both).

Constant regression predictions (a collapsed model) also leave the correlations undefined; there
the score is 0.0 for both Pearson and Spearman: such a predictor carries no information about the
references, and 0.0 keeps an evaluation loop running and ranks it below any positively correlated
model, instead of a NaN poisoning averages and comparisons.
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


def class_metrics(spec: "TaskSpec", predictions, references) -> dict[str, float]:
    """The metrics of a classification task (its kind's scoring; see the module docstring)."""
    preds, refs = _checked(spec, predictions, references)
    preds, refs = _class_ids(spec, preds), _reference_ids(spec, refs)
    _same_length(spec, preds, refs)
    return {name: METRICS[name](preds, refs) for name in spec.metrics}


def value_metrics(spec: "TaskSpec", predictions, references) -> dict[str, float]:
    """The metrics of a regression task (its kind's scoring; see the module docstring)."""
    preds, refs = _checked(spec, predictions, references)
    preds, refs = _regression_values(spec, preds), refs.astype(np.float64)
    _same_length(spec, preds, refs)
    if len(refs) < 2:
        raise ElasticLMError(f"task {spec.name}: Pearson/Spearman need at least 2 examples, got {len(refs)}")
    if not np.isfinite(refs).all():
        raise ElasticLMError(f"task {spec.name}: references contain NaN or infinity")
    if np.ptp(refs) == 0:
        raise ElasticLMError(f"task {spec.name}: the references are constant ({refs[0]:g}), so Pearson/"
                             f"Spearman are undefined; score a split whose labels vary")
    if np.ptp(preds) == 0:  # a constant predictor: 0.0, see the module docstring
        return {name: 0.0 for name in spec.metrics}
    return {name: METRICS[name](preds, refs) for name in spec.metrics}


def _checked(spec: "TaskSpec", predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and references as arrays of numbers, references (n,), predictions finite."""
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    if refs.ndim != 1:
        raise ElasticLMError(f"task {spec.name}: references must have shape (n,), got {refs.shape}")
    if preds.dtype.kind not in "biuf" or refs.dtype.kind not in "biuf":
        raise ElasticLMError(f"task {spec.name}: predictions and references must be numbers "
                             f"(got {preds.dtype} and {refs.dtype})")
    if preds.dtype.kind == "f" and not np.isfinite(preds).all():
        raise ElasticLMError(f"task {spec.name}: predictions contain NaN or infinity (did the model diverge?)")
    return preds, refs


def _same_length(spec: "TaskSpec", preds: np.ndarray, refs: np.ndarray) -> None:
    if preds.shape != refs.shape:
        raise ElasticLMError(
            f"task {spec.name}: {preds.shape[0]} predictions but {refs.shape[0]} references"
        )
    if len(refs) == 0:
        raise ElasticLMError(f"task {spec.name}: no examples to score")


def _class_ids(spec: "TaskSpec", preds: np.ndarray) -> np.ndarray:
    """Classification predictions as int64 ids, shape (n,); see the module docstring."""
    n_classes = _classes(spec)
    if preds.ndim == 2:  # (n, num_labels) logits
        if preds.shape[1] != n_classes:
            raise ElasticLMError(f"task {spec.name}: logits have {preds.shape[1]} columns but the task has "
                                 f"{n_classes} classes; pass this task's head output")
        return preds.argmax(axis=-1).astype(np.int64)
    if preds.ndim != 1:
        raise ElasticLMError(f"task {spec.name}: predictions of shape {preds.shape}; pass logits (n, "
                             f"{n_classes}) or class ids (n,)")
    if preds.dtype.kind == "f" and (preds != np.round(preds)).any():
        raise ElasticLMError(f"task {spec.name}: 1-D predictions that are not whole numbers (probabilities or "
                             f"scores?); pass logits of shape (n, {n_classes}) or integer class ids")
    ids = preds.astype(np.int64)
    bad = ids[(ids < 0) | (ids >= n_classes)]
    if len(bad):
        raise ElasticLMError(f"task {spec.name}: predicted class id {bad[0]} is out of range 0-{n_classes - 1}")
    return ids


def _classes(spec: "TaskSpec") -> int:
    """The number of classes of a classification task (its `label_names`)."""
    assert spec.label_names is not None, f"task {spec.name} has no classes"
    return len(spec.label_names)


def _reference_ids(spec: "TaskSpec", refs: np.ndarray) -> np.ndarray:
    if refs.dtype.kind == "f" and (refs != np.round(refs)).any():  # NaN fails this too
        raise ElasticLMError(f"task {spec.name}: references are not whole numbers; a classification task "
                             f"scores label ids 0-{_classes(spec) - 1}")
    refs = refs.astype(np.int64)
    if (refs < 0).any():
        raise ElasticLMError(
            f"task {spec.name}: references contain -1 (unlabelled rows, e.g. a GLUE test split); "
            f"score a labelled split such as dev"
        )
    bad = refs[refs >= _classes(spec)]
    if len(bad):
        raise ElasticLMError(f"task {spec.name}: reference label id {bad[0]} is out of range "
                             f"0-{_classes(spec) - 1}")
    return refs


def _regression_values(spec: "TaskSpec", preds: np.ndarray) -> np.ndarray:
    if preds.ndim == 2 and preds.shape[1] == 1:  # (n, 1) regression head output
        preds = preds[:, 0]
    if preds.ndim != 1:
        raise ElasticLMError(f"task {spec.name}: regression predictions of shape {preds.shape}; pass (n,) or (n, 1)")
    return preds.astype(np.float64)


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

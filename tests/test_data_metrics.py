"""Metrics against scikit-learn/scipy and hand-computed values; SQuAD EM/F1 on known cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from elasticlm.data.metrics import glue_average
from elasticlm.kinds import compute_metrics
from elasticlm.data.squad import f1_score, normalize_answer, squad_metrics
from elasticlm.errors import ElasticLMError

RNG = np.random.default_rng(0)
PRED = RNG.integers(0, 2, 200)
REF = np.where(RNG.random(200) < 0.7, PRED, 1 - PRED)


def test_classification_metrics_match_sklearn() -> None:
    assert compute_metrics("mrpc", PRED, REF) == pytest.approx(
        {"f1": skm.f1_score(REF, PRED), "accuracy": skm.accuracy_score(REF, PRED)})
    assert compute_metrics("cola", PRED, REF) == pytest.approx({"mcc": skm.matthews_corrcoef(REF, PRED)})
    assert list(compute_metrics("qqp", PRED, REF)) == ["f1", "accuracy"]


def test_logits_are_argmaxed() -> None:
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.0, 0.5]])  # -> 1, 0, 1
    assert compute_metrics("sst-2", logits, [1, 0, 0]) == pytest.approx({"accuracy": 2 / 3})


def test_multiclass_macro_f1() -> None:
    pred, ref = RNG.integers(0, 5, 100), RNG.integers(0, 5, 100)
    got = compute_metrics("bbc-topic", pred, ref)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(ref, pred, average="macro"))


def test_regression_matches_scipy() -> None:
    ref = RNG.normal(size=50)
    pred = ref + RNG.normal(scale=0.5, size=50)
    got = compute_metrics("sts-b", pred[:, None], ref)  # (n, 1) head output is accepted
    assert got == pytest.approx({"pearson": stats.pearsonr(pred, ref)[0], "spearman": stats.spearmanr(pred, ref)[0]})


def test_hand_computed_values() -> None:
    # 4 examples: TP=1, FP=1, FN=1, TN=1 -> acc 0.5, F1 0.5, MCC 0
    assert compute_metrics("mrpc", [1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx({"f1": 0.5, "accuracy": 0.5})
    assert compute_metrics("cola", [1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx({"mcc": 0.0})
    assert compute_metrics("sts-b", [1, 2, 3], [2, 4, 6]) == pytest.approx({"pearson": 1.0, "spearman": 1.0})


def test_glue_average_hand_computed() -> None:
    results = {"mrpc": {"f1": 0.9, "accuracy": 0.8}, "cola": {"mcc": 0.5},
               "sts-b": {"pearson": 0.88, "spearman": 0.86}, "mnli-m": {"accuracy": 0.8}, "mnli-mm": {"accuracy": 0.82}}
    assert glue_average(results) == pytest.approx((0.85 + 0.5 + 0.87 + 0.8 + 0.82) / 5)
    with pytest.raises(ElasticLMError):
        glue_average({})


def test_metric_errors() -> None:
    with pytest.raises(ElasticLMError, match="references contain -1"):
        compute_metrics("sst-2", [0, 1], [-1, -1])
    with pytest.raises(ElasticLMError, match="3 predictions but 2 references"):
        compute_metrics("sst-2", [0, 1, 1], [0, 1])
    with pytest.raises(ElasticLMError, match="unknown task 'glue'"):
        compute_metrics("glue", [0], [0])


@pytest.mark.parametrize(
    "task, preds, refs, message",
    [
        ("sst-2", [0.2, 0.9, 0.4], [0, 1, 0], r"sst-2: 1-D predictions that are not whole numbers"),
        ("sst-2", np.zeros((3, 3)), [0, 1, 0], r"sst-2: logits have 3 columns but the task has 2 classes"),
        ("bbc-topic", np.zeros((3, 1)), [0, 1, 0], r"bbc-topic: logits have 1 columns but the task has 5 classes"),
        ("sst-2", [0, 2, 1], [0, 1, 0], r"sst-2: predicted class id 2 is out of range 0-1"),
        ("sst-2", [0, 1, 1], [0, 1, 5], r"sst-2: reference label id 5 is out of range 0-1"),
        ("sst-2", [0, 1, 1], [0.0, 0.5, 1.0], r"sst-2: references are not whole numbers"),
        ("sst-2", np.array([[0.1, np.nan], [1.0, 0.0]]), [0, 1], r"sst-2: predictions contain NaN or infinity"),
        ("sst-2", np.zeros((2, 2, 2)), [0, 1], r"sst-2: predictions of shape \(2, 2, 2\)"),
        ("sts-b", np.zeros((3, 2)), [0.0, 1.0, 2.0], r"sts-b: regression predictions of shape \(3, 2\)"),
        ("sts-b", [1.5], [2.0], r"sts-b: Pearson/Spearman need at least 2 examples, got 1"),
        ("sts-b", [1.0, np.inf, 2.0], [0.0, 1.0, 2.0], r"sts-b: predictions contain NaN or infinity"),
        ("sts-b", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], r"sts-b: the references are constant"),
        ("sts-b", [1.0, 2.0], [[1.0], [2.0]], r"sts-b: references must have shape \(n,\)"),
    ],
)
def test_metric_input_checks(task: str, preds, refs, message: str) -> None:
    with pytest.raises(ElasticLMError, match=message) as info:
        compute_metrics(task, preds, refs)
    assert "\n" not in str(info.value)


def test_class_ids_may_be_whole_floats_and_bools() -> None:
    assert compute_metrics("sst-2", np.array([1.0, 0.0, 1.0]), [1, 0, 0]) == pytest.approx({"accuracy": 2 / 3})
    assert compute_metrics("sst-2", [True, False], [1, 0]) == pytest.approx({"accuracy": 1.0})


def test_constant_regression_predictions_score_zero() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy ConstantInputWarning, no NaN
        got = compute_metrics("sts-b", [2.5, 2.5, 2.5], [1.0, 2.0, 4.0])
        assert got == {"pearson": 0.0, "spearman": 0.0}
        assert compute_metrics("sts-b", np.full((4, 1), -0.25), [0.0, 1.0, 0.0, 3.0])["pearson"] == 0.0
        assert compute_metrics("sts-b", [1.0, 2.0], [2.0, 1.0]) == pytest.approx({"pearson": -1.0, "spearman": -1.0})


# --- SQuAD, as the official scripts compute it -----------------------------------------------------

def ex(qid: str, answers: list[str]) -> dict:
    return {"id": qid, "answers": {"text": answers, "answer_start": [0] * len(answers)}}


def test_normalisation_and_token_f1() -> None:
    assert normalize_answer("  The  Quick, brown FOX! ") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    # "the cat sat" vs "a cat sat down": tokens [cat, sat] vs [cat, sat, down] -> P=1, R=2/3, F1=0.8
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert f1_score("", "") == 0.0 and f1_score("", "", version_2=True) == 1.0
    assert f1_score("cat", "", version_2=True) == 0.0


def test_squad_v1_known_cases() -> None:
    examples = [ex("q1", ["Denver Broncos", "The Denver Broncos"]),  # exact after normalisation
                ex("q2", ["Santa Clara, California"]),               # partial: P=1, R=2/3 -> F1 0.8
                ex("q3", ["1982"]),                                   # wrong
                ex("q4", ["Levi's Stadium"])]                         # no prediction -> 0
    preds = {"q1": "the denver broncos!", "q2": "Santa Clara", "q3": "1983"}
    got = squad_metrics(preds, examples)
    assert got["exact_match"] == pytest.approx(25.0)
    assert got["f1"] == pytest.approx(100 * (1 + 0.8 + 0 + 0) / 4)
    assert got["total"] == 4


def test_squad_v2_no_answer() -> None:
    examples = [ex("a", ["Normans"]), ex("b", []), ex("c", []), ex("d", ["France", "in France"])]
    preds = {"a": "the Normans", "b": "", "c": "Vikings", "d": ""}
    got = squad_metrics(preds, examples, version_2=True)
    # a: 1/1, b: no-answer predicted "" -> 1/1, c: answer given to unanswerable -> 0/0, d: missed -> 0/0
    assert got["exact_match"] == pytest.approx(50.0) and got["f1"] == pytest.approx(50.0)
    assert got["HasAns_exact"] == pytest.approx(50.0) and got["HasAns_total"] == 2
    assert got["NoAns_exact"] == pytest.approx(50.0) and got["NoAns_f1"] == pytest.approx(50.0)
    assert got["NoAns_total"] == 2

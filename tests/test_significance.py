"""The paired bootstrap of significance.json: every vectorised metric equals the library's score, the
interval equals a naive loop over the same draws, and it says what it should on clear cases."""

import numpy as np
import pytest

from elasticlm.data.metrics import METRICS
from elasticlm.experiment.significance import CHUNK, as_predictions, paired_bootstrap, resampled, verdict


def _data(metric: str, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    if metric in ("pearson", "spearman"):
        refs = rng.normal(size=n)
        return refs, refs + rng.normal(scale=1.0, size=n), refs + rng.normal(scale=1.5, size=n)
    classes = 3 if metric in ("macro_f1", "mcc") else 2
    refs = rng.integers(0, classes, n)
    noisy = lambda p: np.where(rng.random(n) < p, rng.integers(0, classes, n), refs)  # noqa: E731
    return refs, noisy(0.3), noisy(0.6)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_each_metric_on_every_resample_equals_the_library_score(metric):
    refs, a, _ = _data(metric)
    idx = np.random.default_rng(1).integers(0, len(refs), (5, len(refs)))
    fast = resampled(metric, a, refs, np.vstack([np.arange(len(refs)), idx]))
    slow = [METRICS[metric](a, refs)] + [METRICS[metric](a[i], refs[i]) for i in idx]
    np.testing.assert_allclose(fast, slow, atol=1e-9)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "pearson"])
def test_interval_equals_a_naive_loop_over_the_same_draws(metric):
    refs, a, b = _data(metric, n=120)
    found, other = [a, a[::-1].copy()], [b]
    res = paired_bootstrap(metric, refs, found, other, resamples=CHUNK + 50, seed=7)
    rng = np.random.default_rng(7)
    diffs = []
    for size in (CHUNK, 50):
        for i in rng.integers(0, len(refs), (size, len(refs))):
            f = np.mean([METRICS[metric](p[i], refs[i]) for p in found])
            diffs.append(f - METRICS[metric](b[i], refs[i]))
    np.testing.assert_allclose(res["ci95"], np.percentile(diffs, [2.5, 97.5]), atol=1e-9)
    assert res["win_rate"] == pytest.approx(np.mean(np.asarray(diffs) > 0) + 0.5 * np.mean(np.asarray(diffs) == 0))
    full = np.mean([METRICS[metric](p, refs) for p in found]) - METRICS[metric](b, refs)
    assert res["diff"] == pytest.approx(full)


def test_clear_cases_and_determinism():
    refs, good, bad = _data("accuracy", n=1000)
    res = paired_bootstrap("accuracy", refs, [good], [bad], resamples=2000, seed=0)
    assert res["ci95"][0] > 0 and res["win_rate"] == 1.0 and verdict(res) == "found better"
    assert paired_bootstrap("accuracy", refs, [good], [bad], resamples=2000, seed=0) == res
    same = paired_bootstrap("accuracy", refs, [good], [good.copy()], resamples=500)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["win_rate"] == 0.5
    assert verdict(same) == "within noise"
    assert verdict(paired_bootstrap("accuracy", refs, [bad], [good], resamples=500)) == "found worse"


def test_predictions_from_logits_and_values():
    assert as_predictions(True, np.array([[0.1, 2.0], [3.0, -1.0]])).tolist() == [1, 0]
    assert as_predictions(False, np.array([[0.5], [1.5]])).tolist() == [0.5, 1.5]
    from elasticlm.errors import ElasticLMError

    with pytest.raises(ElasticLMError, match="different splits"):
        paired_bootstrap("accuracy", np.zeros(3), [np.zeros(3)], [np.zeros(4)])

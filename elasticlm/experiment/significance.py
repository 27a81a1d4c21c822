"""Which differences between the models of a run are real: paired bootstrap over examples.

For the found model against every other model of a run, `significance.json` gives the difference of
the task's main metric on the test split (dev where there is no labelled test), its 95% interval from
a paired bootstrap over the split's examples, and the share of resamples in which the found model
wins (ties count half). "Paired": each resample draws the same examples for both models, so the
interval measures the models' difference, not the split's difficulty. With several seeds a model's
score on a resample is the mean over its seeds, so the interval covers the examples' noise around
the seed-averaged models (the run-to-run spread over seeds is `metrics.json`'s std).

Every metric of `elasticlm.data.metrics` is computed here on all resamples at once (numpy, from class
or value predictions indexed by an R×n draw); on the identity draw each equals the scikit-learn /
scipy score (tested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_file
from elasticlm.run_layout import RunLayout

RESAMPLES = 10_000
CHUNK = 500


def as_predictions(classes: bool, outputs: np.ndarray) -> np.ndarray:
    """Model outputs as what a metric scores: class ids (arg-max of n×C logits) or n values."""
    outputs = np.asarray(outputs)
    if classes:
        return outputs.argmax(-1) if outputs.ndim == 2 else outputs.astype(int)
    return outputs.reshape(len(outputs), -1)[:, 0].astype(np.float64)


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0)


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return np.where(den > 0, (x * y).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def resampled(metric: str, preds: np.ndarray, refs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """`metric` of `preds` against `refs` on each row of the R×n index draw `idx`: R values."""
    p, r = preds[idx], refs[idx]
    if metric == "accuracy":
        return (p == r).mean(1)
    if metric == "f1":  # binary F1 of class 1
        return _f1(((p == 1) & (r == 1)).sum(1), ((p == 1) & (r != 1)).sum(1), ((p != 1) & (r == 1)).sum(1))
    if metric == "macro_f1":  # over the classes present in the whole split's predictions or labels
        labels = np.union1d(preds, refs)
        return np.mean([_f1(((p == c) & (r == c)).sum(1), ((p == c) & (r != c)).sum(1),
                             ((p != c) & (r == c)).sum(1)) for c in labels], axis=0)
    if metric == "mcc":  # the multi-class Matthews correlation (= the binary one for two classes)
        labels = np.union1d(preds, refs)
        s = float(p.shape[1])
        c = (p == r).sum(1).astype(np.float64)
        pk = np.stack([(p == k).sum(1) for k in labels], 1).astype(np.float64)
        tk = np.stack([(r == k).sum(1) for k in labels], 1).astype(np.float64)
        den = np.sqrt((s * s - (pk * pk).sum(1)) * (s * s - (tk * tk).sum(1)))
        return np.where(den > 0, (c * s - (pk * tk).sum(1)) / np.where(den > 0, den, 1.0), 0.0)
    if metric == "pearson":
        return _corr(p.astype(np.float64), r.astype(np.float64))
    if metric == "spearman":
        from scipy.stats import rankdata

        return _corr(rankdata(p, axis=1), rankdata(r, axis=1))
    raise ElasticLMError(f"no bootstrap for metric {metric!r}")


def paired_bootstrap(metric: str, refs: np.ndarray, found: list[np.ndarray], other: list[np.ndarray], *,
                     resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """The found model (one prediction array per seed) against another: the difference of the seed-mean
    `metric` on the whole split, its 95% paired-bootstrap interval and the found model's win rate."""
    refs = np.asarray(refs)
    n = len(refs)
    for p in (*found, *other):
        if len(p) != n:
            raise ElasticLMError(f"predictions for {len(p)} examples, labels for {n}: they are of different splits")

    def score(idx):
        f = np.mean([resampled(metric, p, refs, idx) for p in found], axis=0)
        o = np.mean([resampled(metric, p, refs, idx) for p in other], axis=0)
        return f, o

    f, o = score(np.arange(n)[None])
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, resamples, CHUNK):
        df, do = score(rng.integers(0, n, (min(CHUNK, resamples - start), n)))
        diffs.append(df - do)
    d = np.concatenate(diffs)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return {"diff": float(f[0] - o[0]), "ci95": [float(lo), float(hi)],
            "win_rate": float(np.mean(d > 0) + 0.5 * np.mean(d == 0)),
            "found": float(f[0]), "other": float(o[0]), "seeds": len(other)}


def verdict(pair: dict) -> str:
    """Whether a pair's difference is real at 95%: "found better", "found worse" or "within noise"."""
    lo, hi = pair["ci95"]
    return "found better" if lo > 0 else "found worse" if hi < 0 else "within noise"


def write_significance(out: Path, spec, seeds: list[int], names: list[str], *, resamples: int = RESAMPLES,
                       seed: int = 0, say: Callable[[str], None] = print) -> dict:
    """significance.json of run folder `out`: the found model (retrained with `seeds`) against each
    model of `names` (retrained ones with the same seeds; teacher, majority, tfidf-logreg from
    `predictions/`). A model without saved predictions is listed under "missing" with the reason."""
    from elasticlm.kinds import kind_of

    run = RunLayout(out)
    classes = bool(kind_of(spec).classes)

    def load(name: str) -> list[dict] | str:
        files = ([run.reference_predictions(name)] if name in ("teacher", "majority", "tfidf-logreg") else
                 [RunLayout.predictions(run.model(name, None if i == 0 else s)) for i, s in enumerate(seeds)])
        missing = [str(f.relative_to(run.root)) for f in files if not f.exists()]
        if missing:
            return f"no predictions saved ({', '.join(missing)}): retrain it with this version to compare"
        return [dict(np.load(f)) for f in files]

    found = load("found")
    if isinstance(found, str):
        raise ElasticLMError(f"{out}: the found model has {found}")
    split = "test" if all("test" in f for f in found) else "dev"
    result: dict = {"metric": spec.main_metric, "split": split, "seeds": len(seeds), "resamples": resamples,
                    "pairs": {}, "missing": {}}
    refs = found[0][f"{split}_labels"]
    mine = [as_predictions(classes, f[split]) for f in found]
    for name in names:
        other = load(name)
        if isinstance(other, str):
            result["missing"][name] = other
            continue
        if split not in other[0] or not np.array_equal(other[0][f"{split}_labels"], refs):
            result["missing"][name] = f"its {split} predictions are not of the found model's {split} split"
            continue
        pair = paired_bootstrap(spec.main_metric, refs, mine, [as_predictions(classes, o[split]) for o in other],
                                resamples=resamples, seed=seed)
        result["pairs"][name] = {**pair, "verdict": verdict(pair)}
        say(f"found vs {name}: {100 * pair['diff']:+.2f} points {split} {spec.main_metric}, 95% interval "
            f"[{100 * pair['ci95'][0]:+.2f}, {100 * pair['ci95'][1]:+.2f}], found wins {pair['win_rate']:.0%} of "
            f"resamples: {verdict(pair)}")
    with atomic_file(run.significance) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result

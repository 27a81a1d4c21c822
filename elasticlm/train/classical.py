"""The classical baseline a practitioner tries first: TF-IDF features + logistic regression
(scikit-learn), trained on the full training split with C chosen on dev; test scored once."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from elasticlm.errors import ElasticLMError


def tfidf_logreg(task: str, *, data_dir: str | None = None, grid=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
                 say: Callable[[str], None] = print, predictions: dict | None = None) -> dict:
    """`{"params", "latency_ms", "dev", "test", "C"}` for a classification task. `predictions`, when
    given, receives the class ids predicted for dev (and test) and their labels ("dev", "dev_labels", ...)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from elasticlm.data.tasks import load_task
    from elasticlm.kinds import compute_metrics, kind_of

    data = load_task(task, data_dir=data_dir)
    spec = data.spec
    if not kind_of(spec).classes:
        raise ElasticLMError(f"tf-idf baseline: {spec.name} is a {spec.kind} task, not classification")

    def texts(ds):
        cols = [ds[f] for f in spec.text_fields]
        return [" [SEP] ".join(parts) for parts in zip(*cols)]

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    x_train = vec.fit_transform(texts(data.splits["train"]))
    y_train = np.asarray(data.splits["train"]["label"])
    x_dev, y_dev = vec.transform(texts(data.splits["dev"])), np.asarray(data.splits["dev"]["label"])
    best = None
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        score = compute_metrics(spec, clf.predict(x_dev), y_dev)[spec.main_metric]
        if best is None or score > best[0]:
            best = (score, c, clf)
    _, c, clf = best
    found = {"dev": clf.predict(x_dev), "dev_labels": y_dev}
    out = {"params": int(clf.coef_.size + clf.intercept_.size), "C": c,
           "dev": compute_metrics(spec, found["dev"], y_dev)}
    if data.eval_split() == "test":
        test = data.splits["test"]
        x_test = vec.transform(texts(test))
        found.update(test=clf.predict(x_test), test_labels=np.asarray(test["label"]))
        out["test"] = compute_metrics(spec, found["test"], found["test_labels"])
        one = texts(test)[:1]
        t1 = time.perf_counter()
        for _ in range(20):
            clf.predict(vec.transform(one))
        out["latency_ms"] = round((time.perf_counter() - t1) / 20 * 1000, 3)
    else:
        out["latency_ms"] = float("nan")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if predictions is not None:
        predictions.update(found)
    say(f"tf-idf + logistic regression (C={c}): " + ", ".join(
        f"{split} {out[split][spec.main_metric]:.4f}" for split in ("dev", "test") if split in out))
    return out

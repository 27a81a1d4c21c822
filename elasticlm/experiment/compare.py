"""`elasticlm compare`: the found model against the equal-budget baselines of a run folder.

`compare` retrains (or reuses) every model of a finished search with the run's own recipe and rewrites
metrics.json; `table` is metrics.json as the plain-text table the command prints.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from elasticlm.config import from_dict
from elasticlm.io import atomic_file
from elasticlm.errors import ElasticLMError
from elasticlm.experiment.run import RunConfig, Say, retrain_all, significance, skip_for_qa, tfidf_baseline
from elasticlm.run_layout import RunLayout


def compare(out: Path, *, seeds: list[int] | None = None, say: Say = partial(print, flush=True)) -> dict:
    """Retrain (or reuse) the found model and the baselines of a finished search in run folder `out`
    with `seeds` (default: the run's own `retrain.seeds`), and rewrite its metrics.json (mean ± std
    over the seeds) and significance.json."""
    from elasticlm.space import Architecture

    run = RunLayout(out)
    marker = run.run_config
    if not marker.exists() or not run.done(run.search).exists() or not run.arch.exists():
        raise ElasticLMError(f"{out} is not a run folder with a finished search (run_config.json, search/result.json, "
                             f"arch.json); run `elasticlm run --out {out}` first")
    cfg = from_dict(RunConfig, json.loads(marker.read_text())["config"])
    found = json.loads(run.done(run.search).read_text())
    final = Architecture.from_list(json.loads(run.arch.read_text())["layers"])
    metrics = retrain_all(cfg, out, final, found, say, seeds=seeds)
    if cfg.tfidf and not skip_for_qa(cfg, "the TF-IDF + logistic regression baseline", say):
        metrics["tfidf-logreg"] = tfidf_baseline(cfg, out, say)
    with atomic_file(run.metrics) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    significance(cfg, out, metrics, seeds=seeds, say=say)
    return metrics


def table(metrics: dict) -> str:
    """metrics.json as a plain-text table (params, latency, dev and test main metrics, ± std over seeds)."""
    names = sorted({k for m in metrics.values() for s in ("dev", "test") for k in m.get(s, {})})
    head = f"{'model':16s} {'params':>8s} {'ms':>7s} " + " ".join(f"{s + ' ' + n:>17s}" for s in ("dev", "test")
                                                                for n in names) + "  seeds"
    rows = [head]
    for model, m in metrics.items():
        cells = []
        for s in ("dev", "test"):
            for n in names:
                v, sd = m.get(s, {}).get(n, float("nan")), m.get("std", {}).get(s, {}).get(n)
                cells.append(f"{v:10.4f}" + (f"±{sd:.4f}" if sd is not None else " " * 7))
        rows.append(f"{model:16s} {m.get('params', 0) / 1e6:7.2f}M {m.get('latency_ms', float('nan')):7.2f} "
                    + " ".join(cells) + f"  {m.get('seeds', '-')}")
    return "\n".join(rows)

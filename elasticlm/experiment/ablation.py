"""`elasticlm ablate`: the method with one component switched off at a time, over seeds.

Each variant × seed is a whole pipeline run (no baselines, export or report) in its own run folder,
so the grid resumes like any run. `ablation.json` holds one row per variant: the found model's main
metric on dev and test, mean ± std over the seeds (the table `elasticlm report` draws), its Kendall τ
where a rank-check ran, and against `full` (`vs_full`): the test difference with a 95% paired-bootstrap
interval over examples and whether it is real; and `notes`: what a variant leaves the same as the full
method on this task (drawn under the table).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from elasticlm.config import override
from elasticlm.errors import ElasticLMError
from elasticlm.experiment.run import RunConfig, run_pipeline
from elasticlm.io import atomic_file
from elasticlm.run_layout import RunLayout

# variant -> the overrides that switch one component off
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "fixed-dims": ["pretrain.growth.mode=fixed"],
    "no-head-search": ["search.heads.enabled=false"],
    "classic-kd": ["pretrain.distill.kind=classic", "finetune.distill.kind=classic", "retrain.distill.kind=classic"],
    "no-sharing": ["pretrain.space={sharings: [none]}"],
    # the candidates of a layer share one hidden-state projection (instead of one per candidate block)
    "layer-projection": ["pretrain.distill.projection=layer", "finetune.distill.projection=layer"],
}


def ablate(cfg: RunConfig, out: Path, *, variants: list[str] | None = None, seeds: list[int] = (0,),
           rank_archs: int = 0, say: Callable[[str], None] = print) -> dict:
    """Run every variant × seed and write ablation.json. `rank_archs` > 0: also `rank-check` each run
    folder with that many architectures (retrained with the run's seed) and record every fitness's
    Kendall τ beside the variant's accuracy, since τ is what the method's losses claim to improve."""
    variants = list(variants or VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ElasticLMError(f"unknown ablation variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    base = override(cfg, ["baselines=[]", "tfidf=false", "export=false", "report=false"])
    rows, metric = [], None
    for name in variants:
        dev, test, taus = [], [], {}
        for seed in seeds:
            say(f"=== ablation {name}, seed {seed} ===")
            vcfg = override(base, VARIANTS[name] + [f"seed={seed}"])
            m = run_pipeline(vcfg, out / name / f"seed-{seed}", say=say)["found"]
            ranking = _ranking(out / name / f"seed-{seed}", rank_archs, seed, say)
            for fit, r in (ranking or {}).get("fitnesses", {}).items():
                taus.setdefault(fit, []).append(r["kendall_tau"])
            metric = metric or next(iter(m["dev"]))
            dev.append(m["dev"][metric])
            if "test" in m:
                test.append(m["test"][metric])
        row = {"variant": name, "seeds": len(seeds), "dev_mean": float(np.mean(dev)),
               "dev_std": float(np.std(dev, ddof=1)) if len(dev) > 1 else 0.0}
        if test:
            row.update(test_mean=float(np.mean(test)), test_std=float(np.std(test, ddof=1)) if len(test) > 1 else 0.0)
        if taus:
            row["kendall_tau"] = {fit: _spread(values) for fit, values in taus.items()}
        rows.append(row)
    if "full" in variants:
        for row in rows:
            if row["variant"] != "full":
                pair = against_full(out, row["variant"], seeds, metric, seed=cfg.seed)
                if pair is not None:
                    row["vs_full"] = pair
    result = {"metric": metric, "rows": rows}
    notes = variant_notes(cfg, variants)
    if notes:
        result["notes"] = notes
    out.mkdir(parents=True, exist_ok=True)
    sim = block_similarity_file(out, seeds[0], say=say)
    if sim is not None:
        result["similarity"] = {k: v["mean_off_diagonal"] for k, v in sim.items()}
    with atomic_file(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    full = next((r for r in rows if r["variant"] == "full"), None)
    if full:
        for r in rows:
            if r is not full and r["dev_mean"] >= full["dev_mean"]:
                say(f"note: switching off {r['variant']!r} did not hurt here (dev {r['dev_mean']:.4f} ≥ "
                    f"{full['dev_mean']:.4f} with the full method)")
    return result


def _ranking(run: Path, rank_archs: int, seed: int, say: Callable[[str], None]) -> dict | None:
    """The run's ranking.json: made by `rank-check` with `rank_archs` architectures (retrained with the
    run's seed) when `rank_archs` > 0, else the one an earlier `elasticlm rank-check RUN` left in the
    run folder (its own architecture count and seeds), else None."""
    if rank_archs:
        from elasticlm.experiment.rank_check import RankCheckConfig, rank_check

        return rank_check(run, RankCheckConfig(archs=rank_archs, seeds=[seed]), say=say)
    done = RunLayout(run).rank_check / "ranking.json"
    if done.is_file():
        say(f"{run}: Kendall tau from the rank-check already there ({done})")
        return json.loads(done.read_text())
    return None


def against_full(out: Path, variant: str, seeds: list[int], metric: str, *, seed: int = 0) -> dict | None:
    """`variant`'s found model against `full`'s on the test split (dev without one): the difference of the
    seed-mean metric (variant − full), its 95% paired-bootstrap interval over the split's examples
    (`elasticlm.experiment.significance`) and a verdict. None when a run saved no predictions."""
    from elasticlm.experiment.significance import as_predictions, paired_bootstrap

    def load(name: str) -> list[dict] | None:
        files = [RunLayout.predictions(RunLayout(out / name / f"seed-{s}").model("found")) for s in seeds]
        return [dict(np.load(f)) for f in files] if all(f.is_file() for f in files) else None

    mine, full = load(variant), load("full")
    if mine is None or full is None:
        return None
    split = "test" if all("test" in p for p in mine + full) else "dev"
    refs = full[0][f"{split}_labels"]
    if any(not np.array_equal(p[f"{split}_labels"], refs) for p in mine):
        return None
    classes = full[0][split].ndim == 2  # n×C logits; regression saves n values
    try:
        pair = paired_bootstrap(metric, refs, [as_predictions(classes, p[split]) for p in mine],
                                [as_predictions(classes, p[split]) for p in full], seed=seed)
    except (ElasticLMError, KeyError):  # a metric the bootstrap does not compute (QA): no interval
        return None
    lo, hi = pair["ci95"]
    return {"split": split, "diff": pair["diff"], "ci95": pair["ci95"], "win_rate": pair["win_rate"],
            "verdict": "better than full" if lo > 0 else "worse than full" if hi < 0 else "within noise"}


def _spread(values: list) -> dict:
    """{"mean", "std", "per_seed"} of τ values over seeds (an undefined τ, None, is left out of the mean)."""
    ok = [v for v in values if v is not None]
    return {"mean": float(np.mean(ok)) if ok else None,
            "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else 0.0 if ok else None, "per_seed": values}


def variant_notes(cfg: RunConfig, variants: list[str]) -> dict[str, str]:
    """{variant: a sentence} for what a variant does not change on `cfg.task`: classic-kd on a two-class
    task keeps the task logit term (Pearson ρ of two logits is always ±1, so the relational method uses
    the same KL there)."""
    if "classic-kd" not in variants:
        return {}
    from elasticlm.data.tasks import get_spec
    from elasticlm.kinds import kind_of

    try:
        spec = get_spec(cfg.task)
        binary = kind_of(spec).classes and kind_of(spec).num_labels(spec) == 2
    except ElasticLMError:
        return {}
    if not binary:
        return {}
    return {"classic-kd": f"{spec.name} has two classes, so the task logit term of supernet fine-tuning and "
                          f"retraining is the same KL in both rows (ρ of two logits is ±1); classic-kd differs "
                          f"in the attention and hidden terms and in pretraining's MLM logit term"}


def block_similarity_file(out: Path, seed: int, *, probe_blocks: int = 32,
                          say: Callable[[str], None] = print) -> dict | None:
    """OUT/similarity.json: CKA between the middle layer's candidate blocks of the pretrained
    supernets of `full` (relational distillation) and `classic-kd`, on held-out corpus blocks.
    None (and nothing written) unless both variants' supernets exist."""
    from elasticlm.analysis.similarity import block_similarity
    from elasticlm.data.corpus import packed_blocks, probe_batches
    from elasticlm.distill.teachers import load_teacher
    from elasticlm.kinds import KINDS
    from elasticlm.models.folder import load_supernet

    folders = {"relational": RunLayout(out / "full" / f"seed-{seed}").supernet,
               "classic": RunLayout(out / "classic-kd" / f"seed-{seed}").supernet}
    if not all((f / "supernet.safetensors").is_file() for f in folders.values()):
        return None
    result = {}
    for kind, folder in folders.items():
        net, config = load_supernet(folder, KINDS)
        c = config["config"]
        tokenizer = load_teacher(c["teacher"]).tokenizer
        held = packed_blocks(c["corpus"], tokenizer, c["max_length"], tokenizer_id=str(c["teacher"])).heldout
        sim = block_similarity(net, probe_batches(held, probe_blocks), net.space.num_layers // 2, seed=seed)
        m = np.asarray(sim["matrix"])
        off = float((m.sum() - np.trace(m)) / (m.size - len(m)))
        result[kind] = {**sim, "mean_off_diagonal": round(off, 4), "supernet": str(folder)}
        say(f"block similarity ({kind} distillation, layer {sim['layer']}): mean CKA between different "
            f"candidates {off:.3f}")
    with atomic_file(out / "similarity.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result

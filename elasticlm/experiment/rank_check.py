"""`elasticlm rank-check`: can the supernet tell architectures apart?

For a run folder of `elasticlm run` with a finished search, architectures spread over the search's
parameter range are scored by every supernet fitness (`elasticlm.search.search_stages.FITNESSES`, on
the held-out split exactly as the search builds it) and retrained standalone with the run's own
retraining recipe for each seed; `ranking.json` says how well each fitness ranks them as retraining
does (Kendall's τ with a bootstrap interval over the architectures, Spearman's ρ; see
`elasticlm.experiment.ranking`).

The architectures: the search's best (search/result.json, before head search, so that it lies in the
supernet's space like the others), uniform-mobile (`elasticlm.search.baselines`; uniform-bert has its
own hidden size, no path of the supernet, and is left out), and the rest drawn stratified by parameter
count between the search's floor and ceiling. Scoring is cheap and done on every call; each retraining
is a stage folder (OUT/models/ARCH/seed-K/) skipped when done, so the command resumes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from elasticlm.config import from_dict
from elasticlm.errors import ElasticLMError
from elasticlm.experiment.ranking import (RESAMPLES, arch_name, draw_stratified, kendall_tau_or_none,
                                         rank_agreement)
from elasticlm.experiment.run import RunConfig, Say, pretraining_alike, retrain_seed
from elasticlm.io import atomic_file
from elasticlm.run_layout import RunLayout
from elasticlm.runtime import run_jobs
from elasticlm.space import Architecture
from elasticlm.stage_folder import StageFolder, input_path


@dataclass
class RankCheckConfig:
    """Which architectures rank-check retrains, and how often."""

    archs: int = 12
    """Architectures in all: the search's best, uniform-mobile, and the rest drawn spread over the search's
    parameter range (one per equal stratum of parameter count)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Retraining seeds of every architecture (its retrained metric is the mean over them)."""
    seed: int | None = None
    """Seeds the draw and the bootstrap (None: the run's seed)."""
    resamples: int = RESAMPLES
    """Bootstrap resamples over the architectures for τ's 95% interval."""
    workers: int | None = None
    """Models retrained at once (None: the run's `retrain.workers`; see `elasticlm.runtime.run_jobs`)."""

    def validate(self) -> None:
        if self.archs < 3:
            raise ElasticLMError(f"--archs {self.archs}: give at least 3 (the found one, uniform-mobile, one drawn)")
        if not self.seeds:
            raise ElasticLMError("--seeds: give at least one retraining seed")
        if self.workers is not None and self.workers < 1:
            raise ElasticLMError(f"--workers {self.workers}: give at least 1")
        if self.resamples < 100:
            raise ElasticLMError(f"resamples={self.resamples}: give at least 100")


@dataclass
class Candidate:
    """One architecture of the check."""

    arch: Architecture
    role: str
    """"found", "uniform-mobile" or "drawn"."""
    params: int

    @property
    def name(self) -> str:
        return arch_name(self.arch)


def load_run(run_dir: Path) -> tuple[RunConfig, dict]:
    """(the run's config, search/result.json) of a run folder with a finished search."""
    run = RunLayout(run_dir)
    if not run.run_config.exists() or not run.done(run.search).exists() or not run.done(run.supernet_ft).exists():
        raise ElasticLMError(f"{run_dir} is not a run folder with a finished search (run_config.json, "
                             f"supernet-ft/result.json, search/result.json); run `elasticlm run --out {run_dir}` first")
    cfg = from_dict(RunConfig, json.loads(run.run_config.read_text())["config"])
    return cfg, json.loads(run.done(run.search).read_text())


def candidates(space, widths, found: dict, n: int, *, seed) -> tuple[list[Candidate], list[str]]:
    """The found architecture, uniform-mobile and `n` minus those drawn (see the module), with notes."""
    from elasticlm.search.baselines import uniform_mobile

    lo, hi = space.param_range(widths)
    ceiling, floor = found.get("ceiling") or hi, found.get("floor") or lo
    best = Architecture.from_list(found["best"]["arch"])
    mobile = uniform_mobile(space, found.get("ceiling") or space.param_ceiling or int(found["best"]["params"]))
    notes = ["found: search/result.json's best architecture, before head search (arch.json may merge heads), "
             "so it is scored in the supernet's space like the others",
             "uniform-bert is left out: it has its own hidden size, so no path of the supernet scores it"]
    fixed = [Candidate(best, "found", space.count_params(best).total)]
    if mobile == best:
        notes.append("uniform-mobile is the found architecture itself: listed once, as found")
    else:
        fixed.append(Candidate(mobile, "uniform-mobile", space.count_params(mobile).total))
    if any(c.ffn_dim > widths[(l, c.kind, c.sharing)] for l, c in enumerate(mobile)):
        notes.append("uniform-mobile is wider than the supernet's blocks: scored on a copy grown "
                     "function-preservingly, as retraining starts it")
    drawn = draw_stratified(space, n - len(fixed), floor=floor, ceiling=ceiling, seed=seed, widths=widths,
                            exclude=[c.arch for c in fixed])
    return fixed + [Candidate(a, "drawn", space.count_params(a).total) for a in drawn], notes


def score_all(cfg: RunConfig, inp, archs: list[Architecture], *, say: Say) -> tuple[dict[str, list[float]], list[str]]:
    """Every fitness of every architecture on the held-out split: {fitness name: scores}, and notes."""
    from elasticlm.search.search_stages import FITNESSES, make_fitness, search_runtime
    from elasticlm.train.retrain import path_net

    device, bf16 = search_runtime(cfg.search)
    scores, notes = {}, []
    for name in FITNESSES:
        try:
            fitness = make_fitness(cfg.search, inp, device=device, bf16=bf16, name=name, say=say)
        except ElasticLMError as err:  # e.g. agreement on extractive QA
            notes.append(f"fitness {name} skipped: {err}")
            continue
        values = []
        for arch in archs:
            fitness.net = path_net(inp.net, arch)  # the supernet itself unless a block must grow
            values.append(float(fitness([arch])[0]))
        fitness.net = inp.net
        scores[name] = values
        say(f"fitness {name}: " + ", ".join(f"{v:.4f}" for v in values))
    return scores, notes


def retrain_candidates(cfg: RunConfig, run_dir: Path, out: Path, net, cands: list[Candidate], seeds: list[int], *,
                say: Say) -> list[list[dict]]:
    """Each candidate retrained with the run's recipe for each seed into OUT/models/ARCH/seed-K/ (skipped
    when done): their result.json contents, per candidate per seed."""
    from elasticlm.train.retrain import prepare_task

    space = net.space
    todo = any(not RunLayout.done(RunLayout.rank_model(out, c.name, s)).exists() for c in cands for s in seeds)
    data = prepare_task(cfg.retrain, vocab_size=space.vocab_size, say=say, targets=todo,
                        max_positions=space.max_position_embeddings)
    scratch = cfg.retrain.init == "scratch"
    alike = pretraining_alike(cfg, RunLayout(run_dir)) if scratch else None

    def job(c: Candidate, seed: int):
        def train(to: Say) -> dict:
            tell = to if cfg.retrain.workers == 1 else (lambda s: to(f"[{c.name} seed {seed}] {s}"))
            tell(f"-- retraining {c.role} {c.arch.short()} (seed {seed}) --")
            return retrain_seed(cfg, data, None if scratch else net, space, c.arch, c.name, seed,
                                RunLayout.rank_model(out, c.name, seed), RunLayout.rank_pretrain(out, c.name, seed),
                                alike=alike, say=tell)
        return train

    done = run_jobs([job(c, seed) for c in cands for seed in seeds], cfg.retrain.workers, say)
    return [done[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(cands))]


def _retrained(results: list[dict], metric: str) -> dict:
    """{"mean", "std", "per_seed", "split"} of the main metric on test (dev where there is no test)."""
    split = "test" if all("test" in r for r in results) else "dev"
    values = [float(r[split][metric]) for r in results]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "per_seed": values, "split": split}


def rank_check(run_dir: str | Path, cfg: RankCheckConfig | None = None, out: str | Path | None = None, *,
               say: Say = partial(print, flush=True)) -> dict:
    """Score, retrain (or reuse) and rank the architectures of the run folder `run_dir` into `out`
    (default RUN/rank-check/); writes and returns ranking.json."""
    from elasticlm.models.folder import widths_from_json
    from elasticlm.search.search_stages import load_inputs, search_runtime

    cfg = cfg or RankCheckConfig()
    cfg.validate()
    run_dir = Path(run_dir)
    rc, found = load_run(run_dir)
    out = Path(out) if out is not None else RunLayout(run_dir).rank_check
    seed = rc.seed if cfg.seed is None else cfg.seed
    folder = StageFolder(out, "rank-check", {"run": input_path(run_dir, out), "archs": cfg.archs, "seed": seed})
    folder.done()
    device, _ = search_runtime(rc.search)
    inp = load_inputs(RunLayout(run_dir).supernet_ft, rc.search.task, rc.search.data_dir,
                      max_eval_examples=rc.search.max_eval_examples, device=device)
    cands, notes = candidates(inp.net.space, widths_from_json(inp.config["widths"]), found, cfg.archs, seed=seed)
    folder.claim()
    say(f"rank-check: {len(cands)} architectures ({', '.join(c.role for c in cands)}), seeds {cfg.seeds}")
    scores, skipped = score_all(rc, inp, [c.arch for c in cands], say=say)
    net = inp.net.cpu()
    del inp
    if cfg.workers is not None:
        rc = replace(rc, retrain=replace(rc.retrain, workers=cfg.workers))
    results = retrain_candidates(rc, run_dir, out, net, cands, list(cfg.seeds), say=say)
    ranking = ranking_json(rc.search.fitness, found["metric"], cands, scores, results, seed=seed,
                           resamples=cfg.resamples, notes=notes + skipped, seeds=list(cfg.seeds))
    with atomic_file(RunLayout.ranking_file(out)) as tmp:
        tmp.write_text(json.dumps(ranking, indent=2) + "\n")
    return ranking


def ranking_json(fitness: str, metric: str, cands: list[Candidate], scores: dict[str, list[float]],
                 results: list[list[dict]], *, seed, resamples: int, notes: list[str], seeds: list[int]) -> dict:
    """ranking.json: the run's fitness and its τ, every fitness's τ, every architecture's scores."""
    retrained = [_retrained(r, metric) for r in results]
    means = [r["mean"] for r in retrained]
    fitnesses = {name: rank_agreement(values, means, seed=f"{seed}:{name}", resamples=resamples)
                 for name, values in scores.items()}
    if len(seeds) > 1:  # τ against each seed's retrained metric alone: how much the second seed matters
        for name, values in scores.items():
            fitnesses[name]["per_seed_tau"] = [kendall_tau_or_none(values, [r["per_seed"][k] for r in retrained])
                                               for k in range(len(seeds))]
    main = fitnesses.get(fitness, {"kendall_tau": None, "ci95": [None, None], "spearman": None})
    archs: list[dict[str, Any]] = [
        {"arch": c.arch.to_list(), "short": c.arch.short(), "name": c.name, "params": c.params, "role": c.role,
         "fitness": scores.get(fitness, [None] * len(cands))[i],
         "fitnesses": {name: values[i] for name, values in scores.items()},
         "retrained": {k: v for k, v in retrained[i].items() if k != "split"}}
        for i, c in enumerate(cands)]
    return {"fitness": fitness, **main, "metric": metric, "split": retrained[0]["split"], "seeds": seeds,
            "resamples": resamples, "fitnesses": fitnesses, "archs": archs, "notes": notes}

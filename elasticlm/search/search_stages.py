"""The search stages on a fine-tuned supernet folder: evolution (or NSGA-II) → `search/`, head
search → `heads/`. Each writes its folder, a `result.json` done-marker last, and is skipped when that
exists; a killed evolution resumes from `generations.jsonl` (see `elasticlm.search.evolution`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from elasticlm.config import to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS, kind_of
from elasticlm.search.evolution import Budget, EvolutionConfig, candidate, evolve, random_search, rank
from elasticlm.search.heads import HeadsConfig, search_heads, write_heads
from elasticlm.search.pareto import pareto_json, pareto_search, write_pareto
from elasticlm.space import Architecture
from elasticlm.stage_folder import StageFolder, input_path

Say = Callable[[str], None]
FITNESSES = ("metric", "agreement")
"""What a candidate can be scored by (`SearchConfig.fitness`)."""
AUGMENT_P = 0.4
"""Probability that a word of an augmented held-out copy is swapped (the agreement fitness)."""


@dataclass
class SearchConfig:
    """Evolutionary search on a fine-tuned supernet."""

    task: str | None = None
    """Task to search for (a name or a dataset folder); None = the supernet's only task head."""
    data_dir: str | None = None
    """Where GLUE TSVs / SQuAD JSON are (None: built-in sources)."""
    mode: str = "evolution"
    """"evolution" (single objective under the ceiling) or "pareto" (NSGA-II: params vs fitness)."""
    ceiling: int | None = None
    """Most parameters of a candidate (embeddings included); None = the space's ceiling."""
    floor: int | None = None
    """Fewest parameters of a candidate."""
    latency_ms: float | None = None
    """Predicted latency limit at batch 1, N=128 on this machine (per-block table); None = no limit."""
    budgets: dict[str, int] = field(default_factory=dict)
    """Named ceilings whose best architecture `pareto.json` lists (e.g. {"micro": 5000000})."""
    random_baseline: bool = True
    """Also run random search with as many evaluations as the evolution made (a baseline)."""
    max_eval_examples: int | None = None
    """Score candidates on the first N held-out rows only (quick runs)."""
    fitness: str = "metric"
    """What a candidate is scored by on the held-out split: "metric" (the task's main metric) or
    "agreement" (minus the mean KL(teacher || path) of the class logits, minus the MSE for regression,
    over the split and fitness_augment teacher-labelled copies of it; continuous, so it separates paths
    the metric ties). Not for extractive QA."""
    fitness_augment: int = 2
    """Augmented copies of each held-out example (words swapped for embedding neighbours) the
    "agreement" fitness scores on too (0: the held-out rows only)."""
    batch_size: int = 256
    """Examples per inference batch."""
    device: str = "auto"
    """"auto" (this rank's GPU, else CPU), "cpu", "cuda", "cuda:1"..."""
    precision: str = "auto"
    """"auto" (bf16 where faster here), "bf16" or "fp32"."""
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)

    def validate(self) -> None:
        if self.mode not in ("evolution", "pareto"):
            raise ElasticLMError(f"search.mode must be 'evolution' or 'pareto', got {self.mode!r}")
        if self.fitness not in FITNESSES:
            raise ElasticLMError(f"search.fitness must be one of {', '.join(FITNESSES)}, got {self.fitness!r}")
        if not isinstance(self.fitness_augment, int) or self.fitness_augment < 0:
            raise ElasticLMError(f"search.fitness_augment must be an integer >= 0, got {self.fitness_augment!r}")
        self.evolution.validate()
        if not 0.0 < self.heads.eta <= 1.0:
            raise ElasticLMError(f"heads.eta must lie in (0, 1], got {self.heads.eta}")


def _say(s: str) -> None:
    print(s, flush=True)


def search_runtime(cfg: SearchConfig):
    """(device, bf16) the search scores on."""
    from elasticlm.runtime import resolve_bf16, resolve_device

    return resolve_device(cfg.device), resolve_bf16(cfg.precision)


@dataclass
class SearchInputs:
    """A fine-tuned supernet with one task's held-out split, ready to score paths."""

    net: Any
    config: dict
    task: str
    spec: Any
    heldout: Any
    """The encoded last 10% of the training split (QA: its raw examples, windowed by `batches`)."""
    tokenizer: Any
    pad_id: int
    max_length: int

    def batches(self, batch_size: int, device):
        """The held-out split padded once on `device` (QA: windowed into features first)."""
        from elasticlm.train.evaluation import Batches

        return Batches.for_task(self.spec, self.heldout, pad_id=self.pad_id, tokenizer=self.tokenizer,
                                max_length=self.max_length, batch_size=batch_size, device=device)


def load_inputs(supernet_dir: str | Path, task: str | None, data_dir: str | None, *,
                max_eval_examples: int | None = None, device=None) -> SearchInputs:
    """Load the supernet and encode the task's held-out split with the task teacher's tokenizer."""
    from transformers import AutoTokenizer

    from elasticlm.data.tasks import load_task, search_split
    from elasticlm.distill.fetch import quiet_transformers
    from elasticlm.models.folder import load_supernet

    net, config = load_supernet(supernet_dir, KINDS)
    heads = list(config.get("task_heads", {}))
    sources = config.get("task_sources", {})  # head name -> the task name or folder it was trained on
    if task is None and len(heads) == 1:
        task = heads[0]
    data = load_task(sources.get(task, task), data_dir=data_dir) if task else None
    if data is None:
        raise ElasticLMError(f"{supernet_dir} has task heads {heads or 'none'}: say which task to search for "
                             f"(--task NAME)" if heads else
                             f"{supernet_dir} has no task head: fine-tune it first (`elasticlm supernet finetune`)")
    name = data.spec.name
    if name not in config.get("task_heads", {}):
        raise ElasticLMError(f"{supernet_dir} has no head for task {name} (heads: {', '.join(heads) or 'none'}); "
                             f"fine-tune the supernet on it first")
    teacher_path = config.get("task_teachers", {}).get(name)
    if not teacher_path or not Path(teacher_path).is_dir():
        raise ElasticLMError(f"{supernet_dir}: the task teacher of {name} ({teacher_path}) is missing; "
                             f"fine-tune the supernet again")
    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(teacher_path)
    info_file = Path(teacher_path) / "elasticlm_teacher.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    max_length = int(config.get("max_length", {}).get(name) or info.get("max_length") or 128)
    _, held = search_split(data.splits["train"])
    if max_eval_examples:
        held = held.select(range(min(max_eval_examples, len(held))))
    max_length = min(max_length, net.space.max_position_embeddings)
    enc = kind_of(data.spec).eval_rows(held, data.spec, tok, max_length)  # QA: raw examples
    if device is not None:
        net.to(device)
    return SearchInputs(net, config, name, data.spec, enc, tok, tok.pad_token_id or 0, max_length)


def run_search(cfg: SearchConfig, supernet_dir: str | Path, out: str | Path, *, say: Say = _say) -> dict:
    """Evolution (or NSGA-II) on the held-out 10%; writes generations.jsonl, pareto.json, result.json."""
    from elasticlm.models.folder import widths_from_json
    from elasticlm.runtime import Dist

    cfg.validate()
    out, dist = Path(out), Dist.setup()
    folder = StageFolder(out, "search", {**_stage_config(cfg), "supernet": input_path(supernet_dir, out)})
    if (done := folder.done()) is not None:
        say(f"{out}: search already complete")
        return done
    device, bf16 = search_runtime(cfg)
    inp = load_inputs(supernet_dir, cfg.task, cfg.data_dir, max_eval_examples=cfg.max_eval_examples, device=device)
    space, widths = inp.net.space, widths_from_json(inp.config["widths"])
    budget = Budget(cfg.ceiling if cfg.ceiling is not None else space.param_ceiling, cfg.floor)
    budget.check(space, widths)
    accept = _latency_constraint(space, cfg.latency_ms, device, say)
    folder.claim(dist)
    talk = say if dist.main else (lambda s: None)
    fitness = make_fitness(cfg, inp, device=device, bf16=bf16, dist=dist, say=talk)
    batches = fitness.batches
    talk(f"searching {space.num_layers}-layer architectures ≤ {budget.ceiling:,} parameters for {inp.task} "
         f"({cfg.mode}, population {cfg.evolution.population}, {cfg.evolution.generations} generations, "
         f"fitness {cfg.fitness}) on {len(inp.heldout):,} held-out examples"
         + (f" ({len(batches.order):,} {kind_of(inp.spec).unit})" if kind_of(inp.spec).fills_window else "")
         + f", {'bf16' if bf16 else 'fp32'} on {device}")
    t0 = time.perf_counter()
    log = out / "generations.jsonl" if dist.main else None
    if cfg.mode == "pareto":
        res = pareto_search(space, fitness, cfg.evolution, budget=budget, widths=widths, accept=accept, log=log,
                            say=talk)
        scores = res.scores
        best = rank({a: s for a, s in scores.items() if budget.admits(space.count_params(a).total)}, space)[0]
    else:
        res = evolve(space, fitness, cfg.evolution, budget=budget, widths=widths, accept=accept, log=log, say=talk)
        scores, best = res.scores, res.best
    seconds = time.perf_counter() - t0
    result = {"stage": "search", "task": inp.task, "metric": inp.spec.main_metric, "fitness": cfg.fitness,
              "mode": cfg.mode,
              "best": candidate(space, best, scores[best]), "evaluated": len(scores),
              "seconds": round(seconds, 2), "forward_seconds": round(fitness.seconds, 2),
              "candidates_per_s": round(fitness.scored / max(fitness.seconds, 1e-9), 2),
              "ceiling": budget.ceiling, "floor": budget.floor, "latency_ms": cfg.latency_ms}
    talk(f"search: {len(scores)} distinct architectures in {seconds:.1f} s ({result['candidates_per_s']:.2f} "
         f"candidates/s); best {inp.spec.main_metric} {scores[best]:.4f}: {best.short()} "
         f"({space.count_params(best).total / 1e6:.2f}M)")
    if cfg.random_baseline:
        rnd = random_search(space, fitness, len(scores), budget=budget, widths=widths, accept=accept,
                            seed=cfg.evolution.seed, known=scores)
        result["random"] = {**candidate(space, rnd.best, rnd.best_fitness), "evaluated": len(rnd.scores)}
        talk(f"random search, {len(rnd.scores)} architectures: best {rnd.best_fitness:.4f}: {rnd.best.short()}")
    if dist.main:
        write_pareto(out / "pareto.json", pareto_json(space, scores, inp.spec.main_metric if cfg.fitness == "metric"
                                                     else cfg.fitness, cfg.budgets))
    folder.finish(result, dist)
    dist.barrier()
    return result


def _stage_config(cfg: SearchConfig) -> dict:
    """The search folder's config: the default fitness is left out, so a folder searched before the
    fitness fields existed still resumes."""
    out = to_dict(cfg)
    if cfg.fitness == "metric":
        del out["fitness"], out["fitness_augment"]
    return out


def make_fitness(cfg: SearchConfig, inp: SearchInputs, *, device, bf16: bool, name: str | None = None,
                 dist=None, say: Say = _say):
    """The fitness `name` (default `cfg.fitness`) of `inp.net`'s paths on its held-out split (see
    `elasticlm.search.evaluator`); for "agreement" the task teacher's logits are computed here, once."""
    from elasticlm.search.evaluator import AgreementFitness, SupernetFitness
    from elasticlm.train.evaluation import Batches

    name = name or cfg.fitness
    if name not in FITNESSES:
        raise ElasticLMError(f"unknown fitness {name!r}; choose from {', '.join(FITNESSES)}")
    if name == "metric":
        return SupernetFitness(inp.net, inp.task, inp.spec, inp.batches(cfg.batch_size, device), bf16=bf16, dist=dist)
    if kind_of(inp.spec).label_dtype is None:
        raise ElasticLMError(f"fitness 'agreement' needs one output per example (classification or regression); "
                             f"task {inp.task} is {inp.spec.kind}: use search.fitness=metric")
    rows, logits = teacher_rows(cfg, inp, device=device, bf16=bf16, say=say)
    batches = Batches.build(rows, inp.pad_id, batch_size=cfg.batch_size, device=device)
    return AgreementFitness(inp.net, inp.task, inp.spec, batches, logits, bf16=bf16, dist=dist)


def teacher_rows(cfg: SearchConfig, inp: SearchInputs, *, device, bf16: bool, say: Say = _say):
    """(rows, n×C teacher logits): the held-out rows and `cfg.fitness_augment` augmented copies of each
    (`elasticlm.distill.augment`, seeded by the search's seed), with the logits of the task teacher the
    supernet was fine-tuned with (its cached fine-tuned copy)."""
    import datasets

    from elasticlm.distill.augment import as_columns, input_embeddings, neighbour_copies
    from elasticlm.distill.teachers import load_teacher
    from elasticlm.train.retrain import teacher_logits

    teacher = load_teacher(inp.config["task_teachers"][inp.task], task_kinds=KINDS.values(),
                           dtype="bf16" if bf16 else "fp32", device=device)
    rows = as_columns(inp.heldout)
    if cfg.fitness_augment > 0:
        extra = neighbour_copies(rows, input_embeddings(teacher), inp.tokenizer, cfg.fitness_augment, p=AUGMENT_P,
                                 seed=cfg.evolution.seed)
        rows = {k: v + extra[k] for k, v in rows.items()}
    ds = datasets.Dataset.from_dict(rows).with_format("torch")
    say(f"teacher agreement on {len(ds):,} rows ({len(inp.heldout):,} held-out + {len(ds) - len(inp.heldout):,} "
        f"augmented copies), teacher logits computed once")
    return ds, teacher_logits(teacher, ds, inp.pad_id, bf16=bf16, device=device)


def _latency_constraint(space, limit_ms: float | None, device, say: Say):
    if limit_ms is None:
        return None
    import random

    from elasticlm.search.latency import LatencyTable

    table = LatencyTable.load_or_build(space, device=str(device))
    lo = min(table.predict(space.sample(random.Random(i))) for i in range(50))
    say(f"latency limit {limit_ms:g} ms (batch 1, N=128, predicted per block; fastest of 50 random: {lo:.2f} ms)")
    return lambda arch: table.predict(arch) <= limit_ms


def run_heads(cfg: SearchConfig, supernet_dir: str | Path, arch: Architecture, out: str | Path, *,
              say: Say = _say) -> dict:
    """Algorithm 1 on `arch` with the held-out probe; writes heads.json, cka.npz, arch.json, result.json."""
    out = Path(out)
    folder = StageFolder(out, "heads", {"task": cfg.task, "data_dir": cfg.data_dir, "heads": to_dict(cfg.heads),
                                        "arch": arch.to_list(), "supernet": input_path(supernet_dir, out)})
    if (done := folder.done()) is not None:
        say(f"{out}: head search already complete")
        return done
    device, _ = search_runtime(cfg)
    inp = load_inputs(supernet_dir, cfg.task, cfg.data_dir, max_eval_examples=cfg.heads.probe_examples,
                      device=device)
    inp.net.space.validate(arch)
    folder.claim()
    batches = inp.batches(64, device).batches
    t0 = time.perf_counter()
    with torch.no_grad():
        final, records, matrices = search_heads(inp.net, arch, batches, cfg.heads)
    if not cfg.heads.enabled:  # measured and recorded, but not applied
        final = arch
        for r, c in zip(records, arch):
            r["heads_after"] = c.heads
    write_heads(out, final, records, matrices, cfg.heads.eta)
    result = {"stage": "heads", "arch": final.to_list(), "short": final.short(),
              "params": inp.net.space.count_params(final).total, "heads": [r["heads_after"] for r in records],
              "seconds": round(time.perf_counter() - t0, 2)}
    folder.finish(result)
    say(f"head search (η={cfg.heads.eta}): heads per layer {[r['heads_before'] for r in records]} → "
        f"{result['heads']}; final {final.short()}")
    return result

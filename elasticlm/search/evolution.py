"""Evolutionary search over a `SearchSpace` (docs: README, "Search").

The strategy only sees a `fitness(list[Architecture]) -> list[float]` callable, so it can be tested
with a synthetic fitness and run unchanged on the supernet's held-out scores
(`elasticlm.search.evaluator`). SPOS-style: each generation is `population` new children, half by
uniform per-layer crossover of two parents, half by mutating one (each layer resampled with
probability `mutation_prob`); the parents are the `parents` best architectures scored so far. A child
outside [floor, ceiling], rejected by the extra constraint (e.g. a latency limit) or already scored is
redrawn, at most `max_redraws` times, then replaced by a uniform draw within the budget.

Deterministic for a seed: generation g draws from `random.Random(f"{seed}:{g}")` only. Resume is a
replay: every scored architecture is read back from `generations.jsonl` into the cache, the search
runs again from generation 0, the cached candidates cost nothing, and only the missing generations
are appended (each replayed one is checked against its logged population).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from elasticlm.errors import ElasticLMError
from elasticlm.space import Architecture, SearchSpace

Fitness = Callable[[list[Architecture]], list[float]]
"""Scores a batch of architectures (higher is better)."""
Constraint = Callable[[Architecture], bool]
"""An extra acceptance test (e.g. predicted latency under a limit)."""


@dataclass
class EvolutionConfig:
    """Evolution settings (the paper's by default)."""

    population: int = 50
    """Children per generation (the initial population has this many too)."""
    generations: int = 40
    """Generations after the initial population."""
    parents: int = 10
    """How many of the best architectures so far breed the next generation."""
    crossover_prob: float = 1.0
    """Share-of-children switch: with 1.0, half the children come from crossover, half from mutation;
    with p < 1, a crossover child is made with probability p and a mutation child otherwise."""
    mutation_prob: float = 0.1
    """Per-layer probability of resampling a layer in a mutation child."""
    max_redraws: int = 100
    """Redraws of a rejected child before falling back to a uniform draw within the budget."""
    seed: int = 0
    """Seeds every draw (generation g uses `random.Random(f"{seed}:{g}")`)."""

    def validate(self) -> None:
        if self.population < 1 or self.generations < 0 or self.parents < 1:
            raise ElasticLMError("search: population and parents must be ≥ 1 and generations ≥ 0")
        if not 0.0 <= self.crossover_prob <= 1.0 or not 0.0 <= self.mutation_prob <= 1.0:
            raise ElasticLMError("search: crossover_prob and mutation_prob must lie in [0, 1]")


@dataclass(frozen=True)
class Budget:
    """Where an architecture may lie: a parameter range and an optional extra constraint."""

    ceiling: int | None = None
    """Most parameters (total, embeddings included)."""
    floor: int | None = None
    """Fewest parameters."""

    def check(self, space: SearchSpace, widths=None) -> None:
        """A one-line error naming the achievable range when no architecture fits."""
        lo, hi = space.param_range(widths)
        if self.ceiling is not None and self.ceiling < lo:
            raise ElasticLMError(f"budget {self.ceiling:,} is below the smallest architecture of this space "
                                 f"({lo:,}); achievable: {lo:,} to {hi:,} parameters")
        if self.floor is not None and self.floor > hi:
            raise ElasticLMError(f"floor {self.floor:,} is above the largest architecture of this space "
                                 f"({hi:,}); achievable: {lo:,} to {hi:,} parameters")
        if self.ceiling is not None and self.floor is not None and self.floor > self.ceiling:
            raise ElasticLMError(f"floor {self.floor:,} is above the ceiling {self.ceiling:,}")

    def admits(self, params: int) -> bool:
        return (self.ceiling is None or params <= self.ceiling) and (self.floor is None or params >= self.floor)


def candidate(space: SearchSpace, arch: Architecture, fitness: float) -> dict:
    """The JSON record of one scored architecture (`generations.jsonl`, `pareto.json`)."""
    return {"arch": arch.to_list(), "short": arch.short(), "params": space.count_params(arch).total,
            "fitness": float(fitness)}


class GenerationLog:
    """`generations.jsonl`: one line per generation, and the cache of every score in it.

    Lines already in the file are the replay target: `record(g, ...)` checks generation g against
    its line and appends only generations the file does not hold yet. A torn last line (a kill
    while writing) is dropped.
    """

    def __init__(self, path: str | Path | None, space: SearchSpace):
        self.path, self.space = (Path(path) if path else None), space
        self.lines: list[dict] = []
        self.scores: dict[Architecture, float] = {}
        if self.path and self.path.exists():
            good = []
            for raw in self.path.read_text().splitlines():
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    break
                good.append(raw)
                self.lines.append(line)
                for c in line["population"]:
                    self.scores[Architecture.from_list(c["arch"])] = float(c["fitness"])
            text = "".join(g + "\n" for g in good)
            if text != self.path.read_text():
                self.path.write_text(text)

    def record(self, g: int, population: Sequence[Architecture], scores: Sequence[float], *, best: dict,
               evaluated: int, seconds: float) -> dict:
        pop = [candidate(self.space, a, s) for a, s in zip(population, scores)]
        line = {"generation": g, "population": pop, "evaluated": evaluated, "best": best,
                "mean_fitness": float(sum(scores) / len(scores)) if scores else float("nan"),
                "seconds": round(seconds, 3)}
        if g < len(self.lines):
            logged = [c["short"] for c in self.lines[g]["population"]]
            if logged != [c["short"] for c in pop]:
                raise ElasticLMError(f"{self.path} was written by another search (generation {g} differs); "
                                     f"use another output folder or delete it")
            return self.lines[g]
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(line) + "\n")
                f.flush()
        self.lines.append(line)
        return line


class CachedFitness:
    """Scores each distinct architecture once: cache hits (also from a resumed log) cost nothing."""

    def __init__(self, fitness: Fitness, scores: dict[Architecture, float] | None = None):
        self.fitness, self.scores = fitness, dict(scores or {})
        self.calls = 0
        """Architectures actually passed to `fitness` (not cache hits)."""

    def __call__(self, archs: Sequence[Architecture]) -> list[float]:
        todo = list(dict.fromkeys(a for a in archs if a not in self.scores))
        if todo:
            vals = self.fitness(todo)
            if len(vals) != len(todo):
                raise RuntimeError(f"fitness returned {len(vals)} scores for {len(todo)} architectures")
            self.calls += len(todo)
            for a, v in zip(todo, vals):
                v = float(v)
                self.scores[a] = v if math.isfinite(v) else float("-inf")
        return [self.scores[a] for a in archs]


@dataclass
class SearchOutcome:
    best: Architecture
    best_fitness: float
    scores: dict[Architecture, float]
    """Every distinct architecture scored, in the order first scored."""
    generations: int
    seconds: float


def rank(scores: dict[Architecture, float], space: SearchSpace) -> list[Architecture]:
    """Best first; ties broken by fewer parameters, then by the short name (deterministic)."""
    return sorted(scores, key=lambda a: (-scores[a], space.count_params(a).total, a.short()))


class _Drawer:
    """Draws unseen, admissible architectures with bounded redraws."""

    def __init__(self, space: SearchSpace, budget: Budget, widths, accept: Constraint | None, max_redraws: int):
        self.space, self.budget, self.widths, self.accept, self.max_redraws = space, budget, widths, accept, max_redraws

    def ok(self, arch: Architecture, seen) -> bool:
        return (arch not in seen and self.budget.admits(self.space.count_params(arch).total)
                and (self.accept is None or self.accept(arch)))

    def uniform(self, rng: random.Random, seen) -> Architecture | None:
        for _ in range(self.max_redraws):
            arch = self.space.sample_within(rng, self.budget.ceiling, floor=self.budget.floor, widths=self.widths)
            if self.ok(arch, seen):
                return arch
        return None

    def child(self, make: Callable[[], Architecture], rng: random.Random, seen) -> Architecture | None:
        for _ in range(self.max_redraws):
            arch = make()
            if self.ok(arch, seen):
                return arch
        return self.uniform(rng, seen)


class SearchState:
    """What both strategies keep while searching: the log, the score cache, the drawer, every scored
    architecture and the clock (resumed from the log)."""

    def __init__(self, space: SearchSpace, fitness: Fitness, cfg: EvolutionConfig, budget: Budget, widths,
                 accept: Constraint | None, log: str | Path | None):
        cfg.validate()
        budget.check(space, widths)
        self.space = space
        self.log = GenerationLog(log, space)
        self.cached = CachedFitness(fitness, self.log.scores)
        self.drawer = _Drawer(space, budget, widths, accept, cfg.max_redraws)
        self.seen: dict[Architecture, None] = {}
        self.t0 = time.perf_counter() - (self.log.lines[-1]["seconds"] if self.log.lines else 0.0)

    def score(self, g: int, pop: list[Architecture]) -> tuple[list[float], dict]:
        """Score generation `g` (cache first), log it, return its scores and its log line."""
        scores = self.cached(pop)
        self.seen.update(dict.fromkeys(pop))
        best = self.ranked()[0]
        line = self.log.record(g, pop, scores, best=candidate(self.space, best, self.cached.scores[best]),
                               evaluated=len(self.seen), seconds=time.perf_counter() - self.t0)
        return scores, line

    def scores(self) -> dict[Architecture, float]:
        return {a: self.cached.scores[a] for a in self.seen}

    def ranked(self) -> list[Architecture]:
        return rank(self.scores(), self.space)


def initial_population(space: SearchSpace, n: int, rng: random.Random, drawer: _Drawer, seen) -> list[Architecture]:
    pop: list[Architecture] = []
    taken = set(seen)
    for _ in range(n):
        arch = drawer.uniform(rng, taken)
        if arch is None:
            break
        pop.append(arch)
        taken.add(arch)
    return pop


def evolve(space: SearchSpace, fitness: Fitness, cfg: EvolutionConfig, *, budget: Budget = Budget(),
           widths=None, accept: Constraint | None = None, log: str | Path | None = None,
           say: Callable[[str], None] = lambda s: None) -> SearchOutcome:
    """Single-objective evolution (see the module docstring). `widths`: the supernet's per-block FFN
    widths (the choices); `log`: the `generations.jsonl` to append to and resume from."""
    st = SearchState(space, fitness, cfg, budget, widths, accept, log)
    pop = initial_population(space, cfg.population, random.Random(f"{cfg.seed}:0"), st.drawer, st.seen)
    g = 0
    while pop:
        _, line = st.score(g, pop)
        say(f"generation {g}: best {line['best']['fitness']:.4f} ({line['best']['short']}, "
            f"{line['best']['params'] / 1e6:.2f}M), mean {line['mean_fitness']:.4f}, {len(st.seen)} scored")
        if g >= cfg.generations:
            break
        g += 1
        parents = st.ranked()[: cfg.parents]
        rng = random.Random(f"{cfg.seed}:{g}")
        pop = []
        taken = dict(st.seen)
        for i in range(cfg.population):
            cross = (i % 2 == 0) if cfg.crossover_prob >= 1.0 else rng.random() < cfg.crossover_prob
            if cross and len(parents) > 1:
                make = lambda: space.crossover(*rng.sample(parents, 2), rng)  # noqa: E731
            else:
                make = lambda: space.mutate(rng.choice(parents), rng, cfg.mutation_prob, widths)  # noqa: E731
            child = st.drawer.child(make, rng, taken)
            if child is None:
                say(f"generation {g}: no unseen architecture left within the budget after {cfg.max_redraws} redraws")
                break
            pop.append(child)
            taken[child] = None
    if not st.seen:
        raise ElasticLMError("search: no architecture satisfies the budget and constraints")
    scores = st.scores()
    best = rank(scores, space)[0]
    return SearchOutcome(best, scores[best], scores, g, time.perf_counter() - st.t0)


def random_search(space: SearchSpace, fitness: Fitness, n: int, *, budget: Budget = Budget(), widths=None,
                  accept: Constraint | None = None, seed: int = 0, batch: int = 50,
                  known: dict[Architecture, float] | None = None) -> SearchOutcome:
    """The baseline: `n` distinct architectures drawn uniformly within the budget, the best kept.
    `known`: scores already measured (e.g. by the evolution), reused instead of scored again."""
    budget.check(space, widths)
    drawer = _Drawer(space, budget, widths, accept, 1000)
    t0 = time.perf_counter()
    pop = initial_population(space, n, random.Random(f"{seed}:random"), drawer, {})
    cached = CachedFitness(fitness, known)
    for i in range(0, len(pop), batch):
        cached(pop[i:i + batch])
    if not pop:
        raise ElasticLMError("random search: no architecture satisfies the budget and constraints")
    scores = {a: cached.scores[a] for a in pop}
    best = rank(scores, space)[0]
    return SearchOutcome(best, scores[best], scores, 0, time.perf_counter() - t0)


def best_within(scores: dict[Architecture, float], space: SearchSpace, budget: Budget) -> Architecture | None:
    """The best scored architecture inside `budget` (None if none is)."""
    inside = {a: s for a, s in scores.items() if budget.admits(space.count_params(a).total)}
    return rank(inside, space)[0] if inside else None


def archs_of(records: Iterable[dict]) -> list[Architecture]:
    return [Architecture.from_list(r["arch"]) for r in records]

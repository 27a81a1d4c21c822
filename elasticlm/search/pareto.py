"""Every budget in one search: NSGA-II over (parameters ↓, fitness ↑) with pymoo (docs: README, "Search").

The same pieces as the single-objective evolution: the cached `fitness` callable, the same crossover
and mutation of `SearchSpace`, the same budget and constraint checks with bounded redraws, the same
`generations.jsonl` (one line per evaluated batch) and the same replay-resume. pymoo draws from its own
generator seeded by `seed` (no global RNG is touched); our operators derive a `random.Random` from it.
`pareto.json` holds the front, every scored point, and the best architecture under each named budget.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from elasticlm.errors import ElasticLMError
from elasticlm.search.evolution import (Budget, Constraint, EvolutionConfig, Fitness, SearchState, best_within,
                                        candidate)
from elasticlm.space import Architecture, SearchSpace


def pareto_front(scores: dict[Architecture, float], space: SearchSpace) -> list[Architecture]:
    """The non-dominated architectures (fewer parameters, higher fitness), sorted by parameters."""
    pts = sorted(scores, key=lambda a: (space.count_params(a).total, -scores[a], a.short()))
    front, best = [], float("-inf")
    for a in pts:
        if scores[a] > best:
            front.append(a)
            best = scores[a]
    return front


@dataclass
class ParetoOutcome:
    front: list[Architecture]
    scores: dict[Architecture, float]
    generations: int
    seconds: float


def _column(archs: list[Architecture]) -> np.ndarray:
    """An n×1 object array of architectures (numpy would unpack an `Architecture`, a sequence)."""
    X = np.empty((len(archs), 1), dtype=object)
    for i, a in enumerate(archs):
        X[i, 0] = a
    return X


def _rng(random_state) -> random.Random:
    return random.Random(int(random_state.integers(2**62)))


def pareto_search(space: SearchSpace, fitness: Fitness, cfg: EvolutionConfig, *, budget: Budget = Budget(),
                  widths=None, accept: Constraint | None = None, log: str | Path | None = None,
                  say: Callable[[str], None] = lambda s: None) -> ParetoOutcome:
    """NSGA-II for `cfg.generations` generations of `cfg.population`."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.crossover import Crossover
    from pymoo.core.duplicate import ElementwiseDuplicateElimination
    from pymoo.core.mutation import Mutation
    from pymoo.core.problem import Problem
    from pymoo.core.sampling import Sampling
    from pymoo.optimize import minimize

    st = SearchState(space, fitness, cfg, budget, widths, accept, log)
    drawer, seen = st.drawer, st.seen
    gen = [0]

    class _Space(Problem):
        def __init__(self):
            super().__init__(n_var=1, n_obj=2, vtype=object)

        def _evaluate(self, X, out, *args, **kwargs):
            archs = [x[0] for x in X]
            vals, line = st.score(gen[0], archs)
            say(f"generation {gen[0]}: {len(archs)} children, best {line['best']['fitness']:.4f}, "
                f"front {len(pareto_front(st.scores(), space))}, {len(seen)} scored")
            gen[0] += 1
            out["F"] = np.array([[space.count_params(a).total, -v] for a, v in zip(archs, vals)], dtype=float)

    class _Sample(Sampling):
        def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
            rng, taken, pop = _rng(random_state), dict(seen), []
            for _ in range(n_samples):
                a = drawer.uniform(rng, taken)
                if a is None:
                    break
                pop.append(a)
                taken[a] = None
            if not pop:
                raise ElasticLMError("search: no architecture satisfies the budget and constraints")
            return _column(pop)

    class _Cross(Crossover):
        def __init__(self):
            super().__init__(2, 1, prob=cfg.crossover_prob)

        def _do(self, problem, X, *args, random_state=None, **kwargs):
            rng, taken = _rng(random_state), dict(seen)
            _, n, _ = X.shape
            Y = np.empty((1, n, 1), dtype=object)
            for k in range(n):
                a, b = X[0, k, 0], X[1, k, 0]
                child = drawer.child(lambda: space.crossover(a, b, rng), rng, taken) or a
                taken[child] = None
                Y[0, k, 0] = child
            return Y

    class _Mutate(Mutation):
        def _do(self, problem, X, *args, random_state=None, **kwargs):
            rng, taken = _rng(random_state), dict(seen)
            for k in range(len(X)):
                a = X[k, 0]
                child = drawer.child(lambda: space.mutate(a, rng, cfg.mutation_prob, widths), rng, taken) or a
                taken[child] = None
                X[k, 0] = child
            return X

    class _Same(ElementwiseDuplicateElimination):
        def is_equal(self, a, b):
            return bool(np.ravel(a.X)[0] == np.ravel(b.X)[0])

    algorithm = NSGA2(pop_size=cfg.population, sampling=_Sample(), crossover=_Cross(), mutation=_Mutate(prob=1.0),
                      eliminate_duplicates=_Same())
    minimize(_Space(), algorithm, ("n_gen", cfg.generations + 1), seed=cfg.seed, verbose=False)
    scores = st.scores()
    return ParetoOutcome(pareto_front(scores, space), scores, gen[0], time.perf_counter() - st.t0)


def pareto_json(space: SearchSpace, scores: dict[Architecture, float], metric: str,
                budgets: dict[str, int] | None = None) -> dict:
    """`pareto.json`: the front, every scored point, and the best within each named budget."""
    front = pareto_front(scores, space)
    out = {"metric": metric, "front": [candidate(space, a, scores[a]) for a in front],
           "points": [{"params": space.count_params(a).total, "fitness": float(s)} for a, s in scores.items()],
           "budgets": {}}
    for name, ceiling in (budgets or {}).items():
        a = best_within(scores, space, Budget(ceiling=int(ceiling)))
        out["budgets"][name] = {"ceiling": int(ceiling), **(candidate(space, a, scores[a]) if a else {"arch": None})}
    return out


def write_pareto(path: str | Path, data: dict) -> None:
    from elasticlm.io import atomic_file

    with atomic_file(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")

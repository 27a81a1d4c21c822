"""Exact uniform sampling of architectures within a parameter range (`SearchSpace.sample_within`).

Layers' parameter counts are rounded down to a grid, the architectures of each rounded total are
counted by dynamic programming over layers (`_range_table`, cached per space and range), layers are
drawn in proportion to the completions they leave (uniform over a slight superset of the range), and
a draw outside the exact range is redrawn, so the result is uniform over the range itself.
Plain data like `elasticlm.space`, which calls it (a `SearchSpace` is passed in, never imported).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping

from elasticlm.errors import ElasticLMError


def draw_within(space, rng: random.Random, ceiling: int | None, floor: int | None,
                widths: Mapping[tuple[int, str, str], int] | None, max_tries: int) -> tuple:
    """The layers (`LayerChoice`s) of an architecture of the `SearchSpace` `space` drawn uniformly from
    those whose total parameter count lies in [`floor`, `ceiling`] (either may be None, not both)."""
    key = tuple(sorted(widths.items())) if widths is not None else None
    table = _range_table(space, ceiling, floor, key)
    if table is None:
        lo, hi = space.param_range(widths)
        raise ElasticLMError(f"no architecture has between {floor or 0:,} and {ceiling:,} parameters "
                             f"(this space spans {lo:,} to {hi:,}); widen the range" if ceiling is not None else
                             f"no architecture has at least {floor:,} parameters (the largest has {hi:,})")
    options, quanta, counts = table
    for _ in range(max_tries):
        s, chosen = 0, []
        for l, (opts, qs) in enumerate(zip(options, quanta)):
            weights = [counts[l + 1][s + q] if s + q < len(counts[l + 1]) else 0.0 for q in qs]
            i = rng.choices(range(len(opts)), weights=weights)[0]
            chosen.append(opts[i])
            s += qs[i]
        total = space.embedding_params() + sum(space.layer_params(c) for c in chosen)  # count_params(...).total
        if (ceiling is None or total <= ceiling) and (floor is None or total >= floor):
            return tuple(chosen)
    raise ElasticLMError(f"no architecture in [{floor}, {ceiling}] found in {max_tries} draws; widen the range")


_GRID = 2048  # rounded-total buckets of the counting table (finer: fewer redraws, more work)


@functools.lru_cache(maxsize=64)
def _range_table(space, ceiling: int | None, floor: int | None, widths_key):
    """(options per layer, their rounded counts, completion counts) for `draw_within`, or None
    when no architecture can fit. counts[l][s] = architectures of layers l.. whose rounded total,
    added to a partial rounded sum s, lands in the superset range."""
    import numpy as np

    widths = dict(widths_key) if widths_key is not None else None
    options = [space.layer_options(l, widths) for l in range(space.num_layers)]
    params = [[space.layer_params(c) for c in opts] for opts in options]
    emb, L = space.embedding_params(), space.num_layers
    top = sum(max(p) for p in params)
    unit = max(1, -(-top // _GRID))
    quanta = [[p // unit for p in ps] for ps in params]
    hi = top if ceiling is None else ceiling - emb  # exact block budget
    lo = 0 if floor is None else floor - emb
    if hi < sum(min(p) for p in params) or lo > top:
        return None
    q_hi = hi // unit  # rounded-down totals of feasible architectures are <= q_hi ...
    q_lo = max(0, -(-(lo - L * (unit - 1)) // unit))  # ... and >= q_lo
    counts = [None] * (L + 1)
    last = np.zeros(q_hi + 1)
    last[q_lo:] = 1.0
    counts[L] = last
    for l in range(L - 1, -1, -1):
        row = np.zeros(q_hi + 1)
        for q in quanta[l]:
            if q <= q_hi:
                row[: q_hi + 1 - q] += counts[l + 1][q:]
        counts[l] = row
    if counts[0][0] <= 0:
        return None
    return options, quanta, [c.tolist() for c in counts]

"""The statistics and the draw of `elasticlm rank-check` (torch-free): does the supernet's fitness rank
architectures as retraining them does?

`rank_agreement` gives Kendall's τ (scipy's τ-b) between two scores of the same architectures, its 95%
interval from a seeded bootstrap over the architectures (resampled with replacement; resamples whose τ
is undefined, e.g. all one value, are left out) and Spearman's ρ. `draw_stratified` draws architectures
spread over a parameter range: the range cut into equal strata by parameter count, one architecture
drawn uniformly (exactly, `SearchSpace.sample_within`) in each.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from elasticlm.errors import ElasticLMError
from elasticlm.space import Architecture, SearchSpace, block_kind

RESAMPLES = 10_000


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two paired score lists (NaN when either is constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic)


def kendall_tau_or_none(x: Sequence[float], y: Sequence[float]) -> float | None:
    """`kendall_tau`, None where it is undefined (either list constant), without scipy's warning."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", getattr(stats, "ConstantInputWarning", RuntimeWarning))
        return _finite(kendall_tau(x, y))


def bootstrap_tau(x: Sequence[float], y: Sequence[float], *, seed: int | str, resamples: int = RESAMPLES) -> np.ndarray:
    """τ on each of `resamples` resamples of the pairs (drawn with replacement, seeded): R values, NaN where
    undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(random.Random(f"{seed}:rank-bootstrap").getrandbits(64))
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    return np.asarray([kendall_tau(x[i], y[i]) for i in idx])


def rank_agreement(x: Sequence[float], y: Sequence[float], *, seed: int | str,
                   resamples: int = RESAMPLES) -> dict:
    """{"kendall_tau", "ci95": [lo, hi], "spearman"} of scores `x` against `y` (None where undefined)."""
    from scipy import stats
    from scipy.stats import spearmanr

    if len(x) != len(y) or len(x) < 2:
        raise ElasticLMError(f"rank agreement needs two equal lists of at least 2 scores, got {len(x)} and {len(y)}")
    with warnings.catch_warnings():  # a constant resample: τ and ρ are NaN, said as None
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", getattr(stats, "ConstantInputWarning", RuntimeWarning))
        taus = bootstrap_tau(x, y, seed=seed, resamples=resamples)
        tau, rho = kendall_tau(x, y), spearmanr(np.asarray(x, dtype=float), np.asarray(y, dtype=float)).statistic
    taus = taus[np.isfinite(taus)]
    ci = [_finite(v) for v in np.percentile(taus, [2.5, 97.5])] if len(taus) else [None, None]
    return {"kendall_tau": _finite(tau), "ci95": ci, "spearman": _finite(rho)}


def draw_stratified(space: SearchSpace, n: int, *, floor: int, ceiling: int, seed: int | str,
                    widths: Mapping[tuple[int, str, str], int] | None = None,
                    exclude: Sequence[Architecture] = (), tries: int = 100) -> list[Architecture]:
    """`n` distinct architectures spread over [`floor`, `ceiling`] parameters: the range cut into `n` equal
    strata, one drawn uniformly within each (a stratum no architecture falls in: from the whole range),
    none of them in `exclude`. Seeded and deterministic."""
    if n < 0 or floor > ceiling:
        raise ElasticLMError(f"cannot draw {n} architectures between {floor:,} and {ceiling:,} parameters")
    rng = random.Random(f"{seed}:rank-check-draw")
    edges = np.linspace(floor, ceiling, n + 1)
    out: list[Architecture] = []
    taken = set(exclude)
    for i in range(n):
        lo, hi = int(math.ceil(edges[i])), int(edges[i + 1])
        for _ in range(tries):
            try:
                arch = space.sample_within(rng, hi, floor=lo, widths=widths)
            except ElasticLMError:  # no architecture in this stratum
                arch = space.sample_within(rng, ceiling, floor=floor, widths=widths)
            if arch not in taken:
                break
        else:
            raise ElasticLMError(f"found only {len(out)} distinct architectures besides the {len(taken) - len(out)} "
                                 f"given between {floor:,} and {ceiling:,} parameters; ask for fewer --archs")
        taken.add(arch)
        out.append(arch)
    return out


def arch_name(arch: Architecture) -> str:
    """A folder name for `arch`, one part per layer: kind letter, sharing, FFN width, "x", heads
    (`B-264x12_Mqv132x4`)."""
    return "_".join(f"{block_kind(l.kind).letter}{'-' if l.sharing == 'none' else l.sharing}{l.ffn_dim}x{l.heads}"
                    for l in arch)

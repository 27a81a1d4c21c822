"""Hand-designed baselines at a parameter budget (docs: README, "Baselines").

`uniform-mobile`: the largest all-mobile, no-sharing architecture of the space itself (the same FFN
width and heads in every layer). `uniform-bert`: no bert-block architecture of the presets fits their
budgets at width d, so it is built like BERT-tiny/TinyBERT-4: the same factorized embedding, depth and
heads, bert blocks without sharing, FFN = 2·d' (the top of the grid), at the largest hidden size d'
that is a multiple of 4·H and fits the budget. Torch-free: plain arithmetic on `SearchSpace`.
"""

from __future__ import annotations

from dataclasses import replace

from elasticlm.errors import ElasticLMError
from elasticlm.space import Architecture, SearchSpace


def uniform_mobile(space: SearchSpace, ceiling: int) -> Architecture:
    """The largest uniform mobile/none architecture of `space` within `ceiling`."""
    best = None
    for f in space.ffn_grid:
        arch = space.uniform("mobile", "none", f)
        if space.count_params(arch).total <= ceiling:
            best = arch
    if best is None:
        raise ElasticLMError(f"no uniform mobile architecture fits {ceiling:,} parameters")
    return best


def uniform_bert(space: SearchSpace, ceiling: int) -> tuple[SearchSpace, Architecture]:
    """The BERT-style baseline: its own space (hidden size d') and the uniform bert architecture."""
    step = 4 * space.num_heads
    best = None
    d = step
    while d <= 4 * space.hidden_size:
        sub = replace(space, hidden_size=d, param_ceiling=ceiling)
        arch = sub.uniform("bert", "none", 2 * d)
        if sub.count_params(arch).total <= ceiling:
            best = (sub, arch)
        d += step
    if best is None:
        raise ElasticLMError(f"no uniform BERT-style model fits {ceiling:,} parameters")
    return best

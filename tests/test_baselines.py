"""The equal-budget baselines: within the budget, and the largest such."""

from __future__ import annotations

from dataclasses import replace

import pytest

from elasticlm.errors import ElasticLMError
from elasticlm.search.baselines import uniform_bert, uniform_mobile
from elasticlm.space import get_preset

PRESETS = ("demo", "micro", "tiny", "small")


@pytest.mark.parametrize("name", PRESETS)
def test_uniform_mobile_is_the_largest_within_budget(name):
    space = get_preset(name).space
    ceiling = space.param_ceiling
    arch = uniform_mobile(space, ceiling)
    assert all(l == arch[0] for l in arch) and arch[0].kind == "mobile" and arch[0].sharing == "none"
    assert space.count_params(arch).total <= ceiling
    wider = [f for f in space.ffn_grid if f > arch[0].ffn_dim]
    if wider:
        assert space.count_params(space.uniform("mobile", "none", wider[0])).total > ceiling


@pytest.mark.parametrize("name,want", [("demo", 96), ("micro", 144), ("tiny", 240), ("small", 336)])
def test_uniform_bert_is_the_largest_hidden_size_within_budget(name, want):
    space = get_preset(name).space
    ceiling = space.param_ceiling
    sub, arch = uniform_bert(space, ceiling)
    assert sub.hidden_size == want and sub.hidden_size % (4 * space.num_heads) == 0
    assert (sub.num_layers, sub.num_heads, sub.embedding_size) == (space.num_layers, space.num_heads,
                                                                   space.embedding_size)
    assert all(l.kind == "bert" and l.sharing == "none" and l.ffn_dim == 2 * want for l in arch)
    assert sub.count_params(arch).total <= ceiling
    bigger = replace(space, hidden_size=want + 4 * space.num_heads)
    assert bigger.count_params(bigger.uniform("bert", "none", 2 * bigger.hidden_size)).total > ceiling


def test_no_baseline_fits_a_tiny_budget():
    space = get_preset("demo").space
    with pytest.raises(ElasticLMError, match="fits 1,000"):
        uniform_mobile(space, 1000)
    with pytest.raises(ElasticLMError, match="fits 1,000"):
        uniform_bert(space, 1000)

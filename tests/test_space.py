"""The search space as plain data: sampling, variation, validation, JSON, counting, CLI."""

import json
import random

import pytest

from elasticlm.errors import ElasticLMError

from elasticlm.cli import main
from elasticlm.space import (
    CANDIDATES,
    PRESETS,
    Architecture,
    LayerChoice,
    SearchSpace,
    get_preset,
)


@pytest.fixture(params=sorted(PRESETS))
def space(request):
    return PRESETS[request.param].space


def test_presets_match_the_paper():
    small, tiny, micro = (get_preset(n).space for n in ("small", "tiny", "micro"))
    assert (small.hidden_size, small.num_layers, small.param_ceiling) == (528, 12, 15_700_000)
    assert (tiny.hidden_size, tiny.num_layers, tiny.param_ceiling) == (528, 12, 10_000_000)
    assert (micro.hidden_size, micro.num_layers, micro.param_ceiling) == (192, 6, 5_000_000)
    assert small.inner_size == 132
    assert small.ffn_grid == tuple(range(132, 1057, 132))
    assert len(small.candidates) == 6 and small.candidates == CANDIDATES
    assert small.size(with_ffn=False) == 6**12


def test_sampling_is_seeded_and_valid(space):
    a = [space.sample(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(50)]
    assert len(set(archs)) > 40  # hashable and varied
    for arch in archs:
        space.validate(arch)
    # all 6 candidates show up
    assert {l.candidate for arch in archs for l in arch} == set(space.candidates)


def test_sampling_uses_supernet_widths():
    space = get_preset("micro").space
    widths = {(l, k, s): space.ffn_grid[(l + len(k) + len(s)) % 8] for l in range(6) for k, s in space.candidates}
    arch = space.sample(random.Random(0), widths)
    for l, layer in enumerate(arch):
        assert layer.ffn_dim == widths[(l, layer.kind, layer.sharing)]


def test_sample_within_ceiling():
    space = get_preset("tiny").space
    rng = random.Random(3)
    for _ in range(20):
        arch = space.sample_within(rng)
        assert space.count_params(arch).total <= 10_000_000


def test_mutation_and_crossover():
    space = get_preset("small").space
    rng = random.Random(1)
    a, b = space.sample(rng), space.sample(rng)
    assert space.mutate(a, rng, prob=0.0) == a
    changed = sum(x != y for x, y in zip(a, space.mutate(a, rng, prob=1.0)))
    assert changed >= 6
    child = space.crossover(a, b, rng)
    assert all(c in (x, y) for c, x, y in zip(child, a, b))
    # deterministic given the seed
    assert space.crossover(a, b, random.Random(5)) == space.crossover(a, b, random.Random(5))
    assert space.mutate(a, random.Random(5), 0.5) == space.mutate(a, random.Random(5), 0.5)


def test_json_round_trip(space):
    arch = space.sample(random.Random(11))
    text = arch.to_json()
    assert Architecture.from_json(text) == arch
    assert Architecture.from_json(json.dumps(arch.to_list())) == arch
    assert hash(Architecture.from_json(text)) == hash(arch)
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_param_count_by_hand():
    """The formula, computed by hand for d=192, e=128, i=48 (micro)."""
    space = get_preset("micro").space
    d, i, e, V = 192, 48, 128, 30522
    assert space.embedding_params() == (V + 512 + 2) * e + 2 * e + e * d + d
    bert = LayerChoice("bert", "none", 96, 12)
    assert space.layer_params(bert) == 4 * (d * d + d) + 2 * d + (d * 96 + 96) + (96 * d + d) + 2 * d
    shared = LayerChoice("bert", "qv", 96, 12)
    assert space.layer_params(bert) - space.layer_params(shared) == d * d + d
    mob = LayerChoice("mobile", "kv", 144, 12)
    expect = (d * i + i + 2 * i) + 3 * (i * i + i) + 2 * i + 2 * (i * 144 + 144 + 144 * i + i + 2 * i) + (i * d + d + 2 * d)
    assert space.layer_params(mob) == expect


BAD = [
    ({"kind": "conv"}, "layer 2: kind 'conv'"),
    ({"sharing": "qk"}, "layer 2: sharing 'qk'"),
    ({"ffn_dim": 100}, "layer 2: ffn_dim 100 is off the growth grid"),
    ({"ffn_dim": 2 * 192 + 48}, "layer 2: ffn_dim 432 is beyond the maximum 384"),
    ({"heads": 5}, "layer 2: heads 5"),
    ({"heads": 13}, "layer 2: heads 13"),
    ({"heads": 0}, "layer 2: heads 0"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_invalid_architecture_names_layer_and_field(change, message):
    space = get_preset("micro").space
    layers = space.uniform("bert", "none", 96).to_list()
    layers[2].update(change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        space.validate(Architecture.from_list(layers))


def test_invalid_structure():
    space = get_preset("micro").space
    with pytest.raises(ValueError, match="architecture has 5 layers, the space has 6"):
        space.validate(Architecture(space.uniform().layers[:5]))
    with pytest.raises(ValueError, match="layer 0: missing field"):
        Architecture.from_list([{"kind": "bert"}])
    with pytest.raises(ValueError, match="layer 0: ffn_dim must be an integer"):
        Architecture.from_list([{"kind": "bert", "sharing": "none", "ffn_dim": "96", "heads": 12}])
    with pytest.raises(ValueError, match="not valid JSON"):
        Architecture.from_json("{nope")
    with pytest.raises(ValueError, match="unknown preset 'huge'; known presets"):
        get_preset("huge")


def test_mobile_heads_must_divide_inner_width():
    space = get_preset("small").space  # i = 132: 8 does not divide it, 11 does not exist (> 12 ok?)
    arch = Architecture((LayerChoice("mobile", "none", 132, 8),) + space.uniform().layers[1:])
    with pytest.raises(ValueError, match="layer 0: heads 8 .* mobile attention width 132"):
        space.validate(arch)
    ok = Architecture((LayerChoice("bert", "none", 132, 8),) + space.uniform().layers[1:])
    space.validate(ok)  # 528 / 8 = 66


def test_cli_space_prints_samples(capsys):
    assert main(["space", "--preset", "small", "--sample", "5", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "space size: 2,176,782,336" in out
    assert out.count("total") == 5
    assert main(["space", "--preset", "small", "--sample", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out == out  # seeded
    assert main(["space", "--preset", "micro", "--sample", "3", "--json", "--within"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3 and all(r["within_ceiling"] for r in rows)


def test_cli_bad_architecture_is_one_line_error(tmp_path, capsys):
    space = get_preset("demo").space
    layers = space.uniform().to_list()
    layers[1]["sharing"] = "vv"
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"layers": layers}))
    assert main(["space", "--preset", "demo", "--arch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "layer 1: sharing 'vv'" in err and str(path) in err
    assert main(["space", "--preset", "nope"]) == 2
    assert "known presets" in capsys.readouterr().err


def test_sample_within_is_uniform_over_the_range_exactly():
    """On a space small enough to enumerate: every architecture in the range is drawn about equally
    often, and none outside it."""
    import itertools
    from collections import Counter

    space = SearchSpace(hidden_size=48, num_layers=2, num_heads=12, embedding_size=16, vocab_size=97,
                        max_position_embeddings=64)
    opts = space.layer_options(0, None)
    totals = {Architecture((a, b)): space.count_params(Architecture((a, b))).total
              for a, b in itertools.product(opts, space.layer_options(1, None))}
    lo, hi = sorted(totals.values())[len(totals) // 3], sorted(totals.values())[len(totals) // 2]
    inside = {a for a, t in totals.items() if lo <= t <= hi}
    rng = random.Random(0)
    n = 60 * len(inside)
    seen = Counter(space.sample_within(rng, hi, floor=lo) for _ in range(n))
    assert set(seen) == inside
    assert max(seen.values()) < 60 + 6 * 60 ** 0.5 and min(seen.values()) > 60 - 6 * 60 ** 0.5


def test_sample_within_matches_rejection_sampling_where_rejection_works():
    space = get_preset("tiny").space
    rng = random.Random(1)
    plain = [space.sample(rng) for _ in range(20000)]
    totals = sorted(space.count_params(a).total for a in plain)
    ceiling = totals[len(totals) // 20]  # 5% of uniform draws fit: rejection is still feasible
    rejected = [a for a in plain if space.count_params(a).total <= ceiling][:800]
    ours = [space.sample_within(rng, ceiling) for _ in range(800)]
    assert all(space.count_params(a).total <= ceiling for a in ours)

    def stats(archs):
        layers = [c for a in archs for c in a]
        return (sum(c.kind == "bert" for c in layers) / len(layers), sum(c.ffn_dim for c in layers) / len(layers))

    (b1, f1), (b2, f2) = stats(rejected), stats(ours)
    assert abs(b1 - b2) < 0.03 and abs(f1 - f2) / f1 < 0.05, (b1, b2, f1, f2)


def test_sample_within_floor_and_impossible_ranges():
    space = get_preset("micro").space
    rng = random.Random(0)
    lo, hi = space.param_range()
    arch = space.sample_within(rng, hi, floor=hi - (hi - lo) // 10)
    assert space.count_params(arch).total >= hi - (hi - lo) // 10
    with pytest.raises(ElasticLMError, match="no architecture"):
        space.sample_within(rng, lo - 1)
    with pytest.raises(ElasticLMError, match="no architecture"):
        space.sample_within(rng, None, floor=hi + 1)


def test_wrong_types_in_architecture_json_say_so():
    for layer, msg in (({"kind": 1, "sharing": "none", "ffn_dim": 48, "heads": 12}, "kind must be a string.*got 1 \\(int\\)"),
                       ({"kind": "bert", "sharing": None, "ffn_dim": 48, "heads": 12}, "sharing must be a string.*got null")):
        with pytest.raises(ElasticLMError, match=msg):
            Architecture.from_list([layer])


def test_space_dimensions_must_be_integers():
    """A YAML or key=value typo in a dimension is a one-line error naming it; an integral float
    (`param_ceiling: 4.5e6`) is taken as the integer it is."""
    assert SearchSpace.from_dict({"param_ceiling": 4.5e6}).param_ceiling == 4_500_000
    assert SearchSpace.from_dict({"param_ceiling": None}).param_ceiling is None
    for field, value in [("num_layers", "x"), ("num_heads", True), ("hidden_size", 192.5), ("vocab_size", [1])]:
        with pytest.raises(ElasticLMError, match=f"{field} must be an integer, got"):
            SearchSpace.from_dict({field: value})

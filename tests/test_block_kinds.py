"""The block-kind registry: one torch-free spec per kind (`space.BLOCK_KINDS`) and its modules
(`models.blocks.BLOCKS`); an unknown kind is an error naming the known ones, never a fallback."""

import dataclasses
import random

import pytest
import torch

from elasticlm.errors import ElasticLMError
from elasticlm.models import SuperNet, SupernetConfig
from elasticlm.models.blocks import BLOCKS, FFN, MobileBlock, block_class, make_block
from elasticlm.space import KINDS, BLOCK_KINDS, Architecture, BlockKind, LayerChoice, SearchSpace

torch.set_num_threads(2)

KNOWN = "bert, mobile"


def dims(space: SearchSpace) -> dict:
    return dict(hidden_size=space.hidden_size, inner_size=space.inner_size, n_ffn=space.mobile_ffns)


def test_the_registries_cover_the_built_in_kinds(tiny_space):
    assert KINDS == tuple(BLOCK_KINDS) == tuple(BLOCKS) == ("bert", "mobile")
    assert tiny_space.kinds == KINDS
    assert {k: (s.letter, s.title) for k, s in BLOCK_KINDS.items()} == {"bert": ("B", "BERT"),
                                                                         "mobile": ("M", "Mobile")}
    d, i = tiny_space.hidden_size, tiny_space.inner_size
    assert [tiny_space.attention_width(k) for k in KINDS] == [d, i]
    assert [tiny_space.ffn_names(k) for k in KINDS] == [("ffn",), ("ffn.0", "ffn.1")]
    assert len({s.letter for s in BLOCK_KINDS.values()}) == len(BLOCK_KINDS)  # short() tells kinds apart
    assert len({c for s in BLOCK_KINDS.values() for c in s.colours}) == 3 * len(BLOCK_KINDS)
    arch = Architecture((LayerChoice("bert", "none", 24, 4), LayerChoice("mobile", "qv", 12, 2)))
    assert arch.short() == "B-/24/4 Mqv/12/2"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharing", ("none", "qv", "kv"))
def test_each_kind_builds_what_its_spec_counts_and_names(tiny_space, kind, sharing):
    torch.manual_seed(0)
    block = make_block(kind, sharing, 36, 4, **dims(tiny_space))
    assert type(block) is BLOCKS[kind] is block_class(kind) and block.kind == kind
    assert tiny_space.layer_params(LayerChoice(kind, sharing, 36, 4)) == sum(p.numel() for p in block.parameters())
    names = [n for n, m in block.named_modules() if isinstance(m, FFN)]
    assert names == list(tiny_space.ffn_names(kind))
    assert block.ffns() == [block.get_submodule(n) for n in names]
    assert {f.fc_in.in_features for f in block.ffns()} == {tiny_space.attention_width(kind)}
    x = torch.randn(2, 5, tiny_space.hidden_size)
    assert block(x, None)[0].shape == x.shape  # B×N×d in and out


def test_an_unknown_kind_is_an_error_naming_the_known_kinds(tiny_space):
    conv = LayerChoice("conv", "none", 24, 4)
    calls = {
        "attention_width": lambda: tiny_space.attention_width("conv"),
        "ffn_names": lambda: tiny_space.ffn_names("conv"),
        "layer_params": lambda: tiny_space.layer_params(conv),
        "short": lambda: Architecture((conv,)).short(),
        "make_block": lambda: make_block("conv", "none", 24, 4, **dims(tiny_space)),
    }
    for name, call in calls.items():
        with pytest.raises(ElasticLMError, match=f"unknown block kind 'conv'; the known kinds are {KNOWN}"):
            call()
    with pytest.raises(ElasticLMError, match=r"kinds must be a non-empty subset of \('bert', 'mobile'\)"):
        dataclasses.replace(tiny_space, kinds=("bert", "conv"))
    with pytest.raises(ElasticLMError, match="layer 0: kind 'conv' is not one of bert, mobile"):
        tiny_space.validate(Architecture((conv,) * tiny_space.num_layers))


def _mono_params(space: SearchSpace, f: int, projections: int) -> int:
    """A mobile block with one FFN, counted by hand."""
    d, i = space.hidden_size, space.inner_size
    return (d * i + i) + 2 * i + projections * (i * i + i) + 2 * i + (i * f + f) + (f * i + i) + 2 * i \
        + (i * d + d) + 2 * d


MONO = BlockKind("mono", "O", "Mono", lambda space: space.inner_size, lambda space: ("ffn.0",), _mono_params,
                 ("#000000", "#555555", "#aaaaaa"))


class MonoBlock(MobileBlock):
    """A toy third kind: the mobile bottleneck with a single FFN."""

    kind = "mono"

    @classmethod
    def build(cls, sharing, ffn_dim, heads, *, hidden_size, inner_size, n_ffn, eps, dropout, attn_dropout):
        return cls(hidden_size, inner_size, ffn_dim, heads, sharing, 1, eps, dropout, attn_dropout)


def test_a_kind_with_a_spec_but_no_modules_is_rejected_by_the_models(tiny_space, monkeypatch):
    monkeypatch.setitem(BLOCK_KINDS, "mono", MONO)
    space = dataclasses.replace(tiny_space, kinds=(*KINDS, "mono"))
    arch = space.uniform("mono", "none", 24, 4)  # the space alone accepts and counts it
    assert space.count_params(arch).per_layer == (_mono_params(space, 24, 4),) * space.num_layers
    assert arch.short().startswith("O-/24/4")
    message = f"block kind 'mono' has no modules: register a Block class .* \\(kinds with modules: {KNOWN}\\)"
    with pytest.raises(ElasticLMError, match=message):
        make_block("mono", "none", 24, 4, **dims(space))
    with pytest.raises(ElasticLMError, match=message):
        SuperNet(SupernetConfig(space))


def test_a_registered_third_kind_runs_grows_and_reloads_in_the_supernet(tiny_space, monkeypatch):
    """A spec entry and a Block class are all a kind needs: the supernet builds it in every layer,
    counts it exactly, runs it on a path, grows its FFN and reloads the grown state."""
    monkeypatch.setitem(BLOCK_KINDS, "mono", MONO)
    monkeypatch.setitem(BLOCKS, "mono", MonoBlock)
    space = dataclasses.replace(tiny_space, kinds=(*KINDS, "mono"))
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(space)).eval()
    assert len(net.widths()) == space.num_layers * 9
    arch = Architecture(tuple(LayerChoice(k, "qv", space.ffn_step, 4) for k in ("mono", "bert", "mobile", "mono")))
    for l, choice in enumerate(space.validate(arch)):
        assert space.layer_params(choice) == sum(p.numel() for p in net.block(l, choice.kind, "qv").parameters())
    ids = torch.randint(1, space.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = net(ids, arch).last_hidden_state
        net.grow_ffn(0, "mono", "qv", 2 * space.ffn_step, generator=torch.Generator().manual_seed(1))
        assert torch.equal(net(ids, arch).last_hidden_state, before)  # growth preserves the function
    fresh = SuperNet(SupernetConfig(space)).eval()
    fresh.load_state_dict(net.state_dict())
    assert fresh.widths() == net.widths() and fresh.widths()[(0, "mono", "qv")] == 2 * space.ffn_step
    wide = space.sample(random.Random(0), widths=fresh.widths())
    with torch.no_grad():
        assert torch.equal(fresh(ids, wide).last_hidden_state, net(ids, wide).last_hidden_state)

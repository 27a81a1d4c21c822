"""PCA scores and growth selection."""

import random

import pytest
import torch

from elasticlm.analysis.pca import default_k, pca_components, pca_score, probe_scores, select_growth
from elasticlm.errors import ElasticLMError
from elasticlm.models import Capture, SuperNet, SupernetConfig
from elasticlm.space import Architecture, LayerChoice, SearchSpace

G = torch.Generator().manual_seed(0)


def test_isotropic_scores_near_one_and_rank_r_scores_r_over_f():
    f = 32
    iso = torch.randn(20 * f, f, generator=G)
    assert pca_score(iso) > 0.9
    r, f = 5, 40
    low = torch.randn(20 * f, r, generator=G) @ torch.randn(r, f, generator=G)
    assert pca_components(low) == r and pca_score(low) == pytest.approx(r / f)
    assert pca_components(low + 7.5 * torch.randn(f, generator=G)) == r  # centred first
    assert pca_score(low, mode="count") == r


def test_padding_is_excluded():
    r, f = 4, 16
    acts = (torch.randn(6, 40, r, generator=G) @ torch.randn(r, f, generator=G))  # B×N×f
    mask = torch.ones(6, 40, dtype=torch.long)
    mask[:, 30:] = 0
    junk = acts.clone()
    junk[:, 30:] = 1e4 * torch.randn(6, 10, f, generator=G)
    assert pca_components(junk, mask=mask) == r
    assert pca_components(junk) > r  # the junk would count without the mask


def test_mobile_scores_are_the_mean_of_their_ffns_and_small_probes_fail():
    f = 20
    a = torch.randn(200, 3, generator=G) @ torch.randn(3, f, generator=G)
    b = torch.randn(200, 7, generator=G) @ torch.randn(7, f, generator=G)
    assert pca_score(torch.stack([a, b])) == pytest.approx((3 / f + 7 / f) / 2)
    with pytest.raises(ElasticLMError, match="at least 2·f"):
        pca_components(torch.randn(2 * f - 1, f, generator=G))


def test_select_growth_top_k_cap_and_stop():
    widths = {("a",): 8, ("b",): 64, ("c",): 8, ("d",): 16, ("e",): 8}
    scores = {("a",): 0.5, ("b",): 0.99, ("c",): 0.9, ("d",): 0.9, ("e",): 0.1}
    # b has the top score but is at the cap; c and d tie: the order of `widths` decides
    assert select_growth(scores, widths, k=2, max_width=64, target_mean=32) == [("c",), ("d",)]
    assert select_growth(scores, widths, k=10, max_width=64, target_mean=32) == [("c",), ("d",), ("a",), ("e",)]
    assert select_growth(scores, widths, k=2, max_width=64, target_mean=20) == []  # mean 20.8 >= 20
    assert default_k(72) == 21 and default_k(24) == 7 and default_k(2) == 1


SPACE = SearchSpace(hidden_size=16, num_layers=2, num_heads=4, embedding_size=8, vocab_size=40,
                    max_position_embeddings=32)


def probe():
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(1, 40, (4, 32), generator=g),
             "attention_mask": torch.ones(4, 32, dtype=torch.long)} for _ in range(2)]


def test_probe_scores_every_block_freshly():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SuperNet(SupernetConfig(SPACE)).train()
    batches = probe()
    scores = probe_scores(net, batches)
    assert set(scores) == set(net.widths()) and len(scores) == 6 * SPACE.num_layers
    assert all(0 < v <= 1 for v in scores.values()) and net.training
    # by hand, for one block that never trained: its candidate's uniform path, captured activations
    l, kind, sharing = 1, "mobile", "kv"
    arch = Architecture(tuple(LayerChoice(kind, sharing, net.block(i, kind, sharing).ffn_dim, 4) for i in range(2)))
    net.eval()
    with torch.no_grad():
        acts = [net(b["input_ids"], arch, attention_mask=b["attention_mask"],
                    capture=Capture(ffn_hidden=True)).ffn_hiddens[l] for b in batches]  # n_ffn×B×N×f each
    hand = pca_score(torch.cat([a.reshape(a.shape[0], -1, a.shape[-1]) for a in acts], dim=1))
    assert scores[(l, kind, sharing)] == pytest.approx(hand, abs=1e-6)
    # make one block's FFN rank-1: only its score changes
    with torch.no_grad():
        w = net.block(0, "bert", "qv").ffn.fc_in.weight
        w.copy_(torch.outer(torch.randn(w.shape[0], generator=G), torch.randn(w.shape[1], generator=G)))
    after = probe_scores(net, batches)
    changed = {k for k in scores if abs(after[k] - scores[k]) > 1e-9}
    assert changed == {(0, "bert", "qv")} and after[(0, "bert", "qv")] < scores[(0, "bert", "qv")]
    assert not net.training  # restored (it was eval before the second call)

"""PCA scores (k of τ = 0.99 on centred FFN activations), fresh probing of every supernet block, and
growth selection."""

import pytest
import torch

from elasticlm.analysis.pca import (default_k, growth_schedule, pca_components, pca_score, probe_scores,
                                   select_growth)
from elasticlm.errors import ElasticLMError
from elasticlm.models import Capture, SuperNet, SupernetConfig
from elasticlm.space import Architecture, LayerChoice, SearchSpace


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def low_rank(t: int, r: int, f: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(t, r, generator=g) @ torch.randn(r, f, generator=g)  # T×f of rank r


def svd_components(x: torch.Tensor, tau: float) -> int:
    """Reference k: squared singular values of the centred activations."""
    x = x.double()
    s2 = torch.linalg.svdvals(x - x.mean(0)) ** 2
    cum = torch.cumsum(s2, 0) / s2.sum()
    return int((cum < tau - 1e-12).sum()) + 1


# ----- scores of activations -----------------------------------------------------------------


def test_isotropic_scores_near_one_and_rank_r_scores_r_over_f():
    g = gen()
    f = 32
    assert pca_score(torch.randn(20 * f, f, generator=g)) > 0.9
    r, f = 5, 40
    low = low_rank(20 * f, r, f, g)
    assert pca_components(low) == r and pca_score(low) == r / f
    shifted = low + 50.0 * torch.randn(f, generator=g)  # a large mean: centring removes it
    assert pca_components(shifted) == r and pca_score(shifted) == r / f
    assert pca_score(low, mode="count") == r


def test_components_match_an_svd_of_the_centred_activations():
    g = gen(1)
    f = 24
    scales = torch.logspace(0, -3, f, dtype=torch.float64)  # a decaying spectrum
    x = (torch.randn(40 * f, f, generator=g, dtype=torch.float64) * scales) @ torch.linalg.qr(
        torch.randn(f, f, generator=g, dtype=torch.float64))[0] + 3.0
    for tau in (0.5, 0.9, 0.99, 0.999):
        assert pca_components(x, tau) == svd_components(x, tau)
    assert pca_components(x, 1.0) == f


def test_padding_is_excluded():
    g = gen(2)
    r, f, B, N = 4, 16, 6, 40
    acts = low_rank(B * N, r, f, g).view(B, N, f)  # B×N×f
    lengths = torch.tensor([40, 31, 25, 38, 12, 40])
    mask = (torch.arange(N)[None] < lengths[:, None]).long()  # B×N
    junk = acts.clone()
    junk[mask == 0] = 1e4 * torch.randn(int((mask == 0).sum()), f, generator=g)
    real = acts[mask.bool()]  # T×f
    assert pca_components(junk, mask=mask) == pca_components(real) == r
    assert pca_score(junk, mask=mask) == pca_score(real)
    assert pca_components(junk.reshape(-1, f)) > r  # the junk would count without the mask


def test_count_mode_and_mobile_blocks_score_the_mean_of_their_ffns():
    g = gen(3)
    f = 20
    a, b = low_rank(200, 3, f, g), low_rank(200, 7, f, g)
    stacked = torch.stack([a, b])  # n_ffn×T×f
    assert pca_score(stacked) == pytest.approx((3 / f + 7 / f) / 2)
    assert pca_score(stacked, mode="count") == pytest.approx(5.0)
    mask = torch.ones(4, 50, dtype=torch.long)
    mask[:, 45:] = 0
    padded = stacked.view(2, 4, 50, f).clone()  # n_ffn×B×N×f
    padded[:, :, 45:] = 1e4
    assert pca_score(padded, mask=mask) == pytest.approx((pca_score(a.view(4, 50, f)[:, :45].reshape(-1, f))
                                                          + pca_score(b.view(4, 50, f)[:, :45].reshape(-1, f))) / 2)


def test_user_errors():
    g = gen(4)
    f = 20
    with pytest.raises(ElasticLMError, match=r"39 real tokens.*at least 2·f = 40"):
        pca_components(torch.randn(2 * f - 1, f, generator=g))
    assert pca_components(torch.randn(2 * f, f, generator=g)) > 0
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[:, 19:] = 0  # 38 real tokens of 60
    with pytest.raises(ElasticLMError, match="38 real tokens"):
        pca_score(torch.randn(2, 30, f, generator=g), mask=mask)
    x = torch.randn(100, f, generator=g)
    with pytest.raises(ElasticLMError, match="mode"):
        pca_score(x, mode="share")
    with pytest.raises(ElasticLMError, match="tau"):
        pca_score(x, tau=1.5)
    with pytest.raises(ElasticLMError, match="mask shape"):
        pca_components(x.view(4, 25, f), mask=torch.ones(4, 24))


# ----- growth selection ----------------------------------------------------------------------


def test_select_growth_top_k_cap_stop_and_ties():
    widths = {("a",): 8, ("b",): 64, ("c",): 8, ("d",): 16, ("e",): 8}
    scores = {("a",): 0.5, ("b",): 0.99, ("c",): 0.9, ("d",): 0.9, ("e",): 0.1}
    # b has the top score but is at the cap; c and d tie: the order of `widths` decides
    assert select_growth(scores, widths, k=2, max_width=64, target_mean=32) == [("c",), ("d",)]
    reordered = {key: widths[key] for key in (("d",), ("c",), ("a",), ("b",), ("e",))}
    assert select_growth(scores, reordered, k=2, max_width=64, target_mean=32) == [("d",), ("c",)]
    assert select_growth(scores, widths, k=3, max_width=64, target_mean=32) == [("c",), ("d",), ("a",)]
    assert select_growth(scores, widths, k=10, max_width=64, target_mean=32) == [("c",), ("d",), ("a",), ("e",)]
    assert select_growth(scores, widths, k=2, max_width=64, target_mean=20.8) == []  # mean 20.8 reached
    assert select_growth(scores, widths, k=2, max_width=64, target_mean=20.9) == [("c",), ("d",)]
    assert select_growth(scores, {key: 64 for key in widths}, k=2, max_width=64, target_mean=100) == []
    with pytest.raises(ElasticLMError, match="no PCA score"):
        select_growth({("a",): 1.0}, widths, k=2, max_width=64, target_mean=32)


def simulate(n: int, d: int, every: int, k: int, total: int) -> tuple[float, int]:
    """(mean width after the run, step of the last round that grew): uniform scores, widths from d/4."""
    widths = {(i,): d // 4 for i in range(n)}
    last = 0
    for step in range(every, total + 1, every):
        grown = select_growth({key: 1.0 for key in widths}, widths, k=k, max_width=2 * d, target_mean=d)
        for key in grown:
            widths[key] += d // 4
        last = step if grown else last
    return sum(widths.values()) / n, last


@pytest.mark.parametrize("n,d,total", [(24, 192, 240), (72, 528, 4000), (12, 32, 16), (72, 528, 30), (6, 32, 5)])
def test_growth_schedule_reaches_d_before_the_settling_steps(n, d, total):
    every, k = growth_schedule(n, d / 4, d, d // 4, total)
    mean, last = simulate(n, d, every, k, total)
    assert mean >= d and last <= int(total * 0.8)
    assert k >= min(n, default_k(n))


def test_growth_schedule_keeps_what_is_given_and_fits_the_rest():
    assert growth_schedule(24, 48, 192, 48, 240) == (17, 7)  # the demo: 11 rounds of 7, the last at step 187
    assert growth_schedule(24, 48, 192, 48, 240, every=50, k=7) == (50, 7)  # both given: as they are
    every, k = growth_schedule(24, 48, 192, 48, 240, every=50)  # 3 rounds fit in 192 steps: K = 24
    assert (every, k) == (50, 24) and simulate(24, 192, every, k, 240)[0] >= 192
    assert growth_schedule(24, 48, 192, 48, 240, k=12) == (32, 12)  # 6 rounds of 12
    assert growth_schedule(24, 192, 192, 48, 240)[1] == 7  # nothing to grow: the default K
    with pytest.raises(ElasticLMError):
        growth_schedule(24, 48, 192, 48, 0)
    with pytest.raises(ElasticLMError):
        growth_schedule(24, 48, 192, 48, 240, settle=1.0)


def test_default_k():
    assert default_k(72) == 21 and default_k(24) == 7 and default_k(12) == 3 and default_k(2) == 1
    with pytest.raises(ElasticLMError):
        default_k(0)


# ----- probing a supernet --------------------------------------------------------------------

# d=32, L=2, H=4 -> mobile inner width 8 (4 heads of 2); FFN grid 8, 16, ..., 64; 12 blocks
SPACE = SearchSpace(hidden_size=32, num_layers=2, num_heads=4, embedding_size=16, vocab_size=50,
                    max_position_embeddings=32)


def tiny_net() -> SuperNet:
    net = SuperNet(SupernetConfig(SPACE))
    g = gen(5)
    with torch.no_grad():  # seeded weights, no global RNG; non-trivial norms
        for name, p in net.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3, generator=g)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2, generator=g)
            else:
                p.normal_(0.0, 0.1, generator=g)
    return net


def probe(types: bool = False) -> list[dict[str, torch.Tensor]]:
    g = gen(6)
    out = []
    for lengths in ([24, 20, 13, 24], [9, 24, 17, 22]):
        mask = (torch.arange(24)[None] < torch.tensor(lengths)[:, None]).long()  # B×N
        ids = torch.randint(1, 50, (4, 24), generator=g) * mask  # padding id 0
        batch = {"input_ids": ids, "attention_mask": mask}
        if types:
            batch["token_type_ids"] = (torch.arange(24)[None] >= 12).long().expand(4, 24) * mask
        out.append(batch)
    return out


def by_hand(net: SuperNet, batches, l: int, kind: str, sharing: str) -> float:
    """Block (l, kind, sharing)'s score from its captured activations on its candidate's uniform path."""
    arch = Architecture(tuple(LayerChoice(kind, sharing, net.block(i, kind, sharing).ffn_dim, SPACE.num_heads)
                              for i in range(SPACE.num_layers)))
    was = net.training
    net.eval()
    rows = []
    with torch.no_grad():
        for b in batches:
            h = net(b["input_ids"], arch, attention_mask=b["attention_mask"], token_type_ids=b.get("token_type_ids"),
                    capture=Capture(ffn_hidden=True)).ffn_hiddens[l]  # B×N×f or n_ffn×B×N×f
            rows.append(h[..., b["attention_mask"].bool(), :])  # T×f or n_ffn×T×f
    net.train(was)
    return pca_score(torch.cat(rows, dim=-2))


def test_probe_scores_every_block_freshly_and_restores_modes():
    net = tiny_net().train()
    batches = probe()
    # train one path (bert/none everywhere) a little, and grow two blocks: the probe sees current weights
    arch = SPACE.uniform("bert", "none", ffn_dim=8)
    opt = torch.optim.SGD(net.path_parameters(arch), lr=0.5)
    for b in batches * 2:
        out = net(b["input_ids"], arch, attention_mask=b["attention_mask"])
        loss = torch.nn.functional.cross_entropy(net.mlm_logits(out.last_hidden_state).flatten(0, 1),
                                                 b["input_ids"].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.grow_ffn(0, "mobile", "kv", 16, generator=gen(7))
    net.grow_ffn(1, "bert", "none", 24, generator=gen(8))
    net.block(0, "bert", "qv").eval()  # a mixed train/eval state, restored module by module
    modes = {name: m.training for name, m in net.named_modules()}

    scores = probe_scores(net, batches)
    assert list(scores) == [key for key, _ in net.blocks()] and len(scores) == 6 * SPACE.num_layers
    assert all(0 < v <= 1 for v in scores.values())
    assert {name: m.training for name, m in net.named_modules()} == modes
    widths = net.widths()
    for key, v in scores.items():
        assert (v * widths[key] * (2 if key[1] == "mobile" else 1)) == pytest.approx(
            round(v * widths[key] * (2 if key[1] == "mobile" else 1)))  # k / f at the current width
    # never trained (and grown), never trained, trained, trained and grown: all equal a hand computation
    for key in ((0, "mobile", "kv"), (1, "mobile", "qv"), (0, "bert", "none"), (1, "bert", "none")):
        assert scores[key] == by_hand(net, batches, *key), key
    counts = probe_scores(net, batches, mode="count")
    assert all(counts[key] == pytest.approx(scores[key] * widths[key]) for key in scores)

    # make one last-layer block's FFN input rank-1: only its score changes, and it drops
    target = (1, "bert", "qv")
    with torch.no_grad():
        w = net.block(*target).ffn.fc_in.weight  # f×d
        w.copy_(torch.outer(torch.randn(w.shape[0], generator=gen(9)), torch.randn(w.shape[1], generator=gen(10))))
    net.eval()
    after = probe_scores(net, batches)
    assert {key for key in scores if after[key] != scores[key]} == {target}
    assert after[target] < scores[target] and after[target] == by_hand(net, batches, *target)
    assert not net.training and not any(m.training for m in net.modules())


def test_probe_scores_token_types_padding_and_errors():
    net = tiny_net().eval()
    batches = probe(types=True)
    scores = probe_scores(net, batches)
    assert scores[(1, "mobile", "none")] == by_hand(net, batches, 1, "mobile", "none")
    seen, forward = [], net.forward  # every pass gets the batch's token types
    net.forward = lambda *a, **kw: (seen.append(kw.get("token_type_ids")), forward(*a, **kw))[1]
    assert probe_scores(net, batches) == scores
    assert len(seen) == 6 * len(batches) and all(t is not None and torch.equal(t, batches[i % 2]["token_type_ids"])
                                                  for i, t in enumerate(seen))
    del net.forward
    # junk in padded positions changes nothing
    junk = [dict(b, input_ids=torch.where(b["attention_mask"].bool(), b["input_ids"], 49)) for b in batches]
    assert probe_scores(net, junk) == scores
    with pytest.raises(ElasticLMError, match="empty"):
        probe_scores(net, [])
    net.grow_ffn(0, "bert", "kv", 64)  # 2·f = 128 real tokens needed, the probe has 153
    probe_scores(net, batches)
    with pytest.raises(ElasticLMError, match=r"\d+ real tokens for an FFN of width 64"):
        probe_scores(net, batches[:1])
    assert not net.training

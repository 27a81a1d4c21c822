"""Distillation losses against naive per-row loops, and their invariances."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elasticlm.distill.losses import (DistillConfig, HiddenProjection, attention_loss, hidden_loss, layer_map,
                                      logit_loss, pearson_distance, weighted_total)
from elasticlm.errors import ElasticLMError

G = torch.Generator().manual_seed(0)


def rho(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def ragged_mask(B=3, N=7) -> torch.Tensor:
    mask = torch.ones(B, N, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return mask


def softmax_rows(B, H, N, mask) -> torch.Tensor:
    scores = torch.randn(B, H, N, N, generator=G)
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], -1e9)
    return scores.softmax(-1)


def test_logit_and_hidden_losses_equal_a_naive_loop():
    mask = ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=G), torch.randn(3, 7, 11, generator=G)
    ref = np.mean([1 - rho(s[b, n], t[b, n]) for b in range(3) for n in range(7) if mask[b, n]])
    assert logit_loss(s, t, mask).item() == pytest.approx(ref, abs=1e-5)
    assert hidden_loss(s, t, mask).item() == pytest.approx(ref, abs=1e-5)
    rows_s, rows_t = s[0], t[0]  # R×C form
    ref_rows = np.mean([1 - rho(rows_s[i], rows_t[i]) for i in range(7)])
    assert logit_loss(rows_s, rows_t).item() == pytest.approx(ref_rows, abs=1e-5)


def test_attention_loss_equals_a_naive_loop_over_real_queries_and_keys():
    mask = ragged_mask()
    s, t = softmax_rows(3, 4, 7, mask), softmax_rows(3, 4, 7, mask)
    vals = []
    for b in range(3):
        keys = [k for k in range(7) if mask[b, k]]
        for h in range(4):
            for q in range(7):
                if mask[b, q]:
                    vals.append(1 - rho(s[b, h, q, keys], t[b, h, q, keys]))
    assert attention_loss(s, t, mask).item() == pytest.approx(np.mean(vals), abs=1e-5)
    # unpadded batches take the fast path; same answer as the loop
    full = torch.ones(3, 7, dtype=torch.long)
    s2, t2 = softmax_rows(3, 4, 7, full), softmax_rows(3, 4, 7, full)
    ref = np.mean([1 - rho(s2[b, h, q], t2[b, h, q]) for b in range(3) for h in range(4) for q in range(7)])
    assert attention_loss(s2, t2, full).item() == pytest.approx(ref, abs=1e-5)


def test_head_count_mismatch_compares_head_averaged_maps():
    mask = ragged_mask()
    s, t = softmax_rows(3, 2, 7, mask), softmax_rows(3, 6, 7, mask)
    expected = attention_loss(s.mean(1, keepdim=True), t.mean(1, keepdim=True), mask)
    torch.testing.assert_close(attention_loss(s, t, mask), expected)


def test_zero_for_identical_inputs_and_invariant_to_scale_and_shift():
    mask = ragged_mask()
    x = torch.randn(3, 7, 11, generator=G)
    assert logit_loss(x, x, mask).item() == pytest.approx(0, abs=1e-6)
    assert hidden_loss(x, x, mask).item() == pytest.approx(0, abs=1e-6)
    scale = torch.rand(3, 7, 1, generator=G) + 0.5
    shift = torch.randn(3, 7, 1, generator=G)
    assert logit_loss(x * scale + shift, x, mask).item() == pytest.approx(0, abs=1e-5)
    assert hidden_loss(x * scale + shift, x, mask).item() == pytest.approx(0, abs=1e-5)
    p = softmax_rows(3, 4, 7, mask)
    assert attention_loss(p, p, mask).item() == pytest.approx(0, abs=1e-5)
    keys = mask[:, None, None, :].float()
    moved = (p * (torch.rand(3, 4, 7, 1, generator=G) + 0.5) + torch.randn(3, 4, 7, 1, generator=G)) * keys
    assert attention_loss(moved, p, mask).item() == pytest.approx(0, abs=1e-4)


def test_padding_never_counts():
    mask = ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=G), torch.randn(3, 7, 11, generator=G)
    junk = ~mask.bool()
    s2, t2 = s.clone(), t.clone()
    s2[junk], t2[junk] = 1e3, -7.0
    for fn in (logit_loss, hidden_loss):
        torch.testing.assert_close(fn(s2, t2, mask), fn(s, t, mask))
    ps, pt = softmax_rows(3, 4, 7, mask), softmax_rows(3, 4, 7, mask)
    ps2, pt2 = ps.clone(), pt.clone()
    pad_keys = junk[:, None, None, :].expand_as(ps2)
    ps2[pad_keys], pt2[pad_keys] = 0.9, 0.1  # padded keys
    pad_queries = junk[:, None, :, None].expand_as(ps2)
    ps2[pad_queries] = torch.rand(int(pad_queries.sum()), generator=G)  # padded query rows
    for kind in ("relational", "classic"):
        torch.testing.assert_close(attention_loss(ps2, pt2, mask, kind=kind), attention_loss(ps, pt, mask, kind=kind))


def test_classic_losses_equal_torch():
    mask = ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=G), torch.randn(3, 7, 11, generator=G)
    rows_s, rows_t = s[mask.bool()], t[mask.bool()]
    T = 2.0
    ref = F.kl_div(F.log_softmax(rows_s / T, -1), F.softmax(rows_t / T, -1), reduction="batchmean") * T * T
    torch.testing.assert_close(logit_loss(s, t, mask, kind="classic", temperature=T), ref)
    torch.testing.assert_close(hidden_loss(s, t, mask, kind="classic"), F.mse_loss(rows_s, rows_t))
    ps, pt = softmax_rows(3, 4, 7, mask), softmax_rows(3, 4, 7, mask)
    vals = [(ps[b, h, q, k] - pt[b, h, q, k]) ** 2 for b in range(3) for h in range(4) for q in range(7)
            for k in range(7) if mask[b, q] and mask[b, k]]
    assert attention_loss(ps, pt, mask, kind="classic").item() == pytest.approx(torch.stack(vals).mean().item(), rel=1e-5)


def test_regression_logits_use_mse():
    s, t = torch.randn(5, 1, generator=G), torch.randn(5, 1, generator=G)
    torch.testing.assert_close(logit_loss(s, t), F.mse_loss(s, t))
    torch.testing.assert_close(logit_loss(s, t, kind="classic"), F.mse_loss(s, t))


def test_gradients_flow_even_for_constant_rows_and_empty_masks():
    s = torch.zeros(2, 5, 8, requires_grad=True)  # constant rows
    t = torch.randn(2, 5, 8, generator=G)
    loss = hidden_loss(s + 0.0, t) + logit_loss(s + 0.0, t)
    loss.backward()
    assert torch.isfinite(s.grad).all() and loss.item() == pytest.approx(2.0, abs=1e-4)
    empty = torch.zeros(2, 5, dtype=torch.long)
    s2 = torch.randn(2, 5, 8, requires_grad=True)
    p = torch.rand(2, 3, 5, 5, requires_grad=True)
    for loss in (hidden_loss(s2, t, empty), logit_loss(s2, t, empty), attention_loss(p, p.detach(), empty)):
        assert loss.item() == 0 and loss.requires_grad
        loss.backward()
    x = torch.randn(4, 6, generator=G, dtype=torch.bfloat16)
    assert pearson_distance(x, x).dtype == torch.float32


def test_config_projection_layer_map_and_total():
    with pytest.raises(ElasticLMError, match="distill.kind"):
        DistillConfig(kind="kl").validate()
    with pytest.raises(ElasticLMError, match="alpha_attn"):
        DistillConfig(alpha_attn=-1).validate()
    assert layer_map(4, 6) == [2, 3, 5, 6]
    assert layer_map(12, 6) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    proj = HiddenProjection(3, 8, 5, generator=torch.Generator().manual_seed(0))
    assert proj(2, torch.randn(2, 4, 8)).shape == (2, 4, 5)
    cfg = DistillConfig(alpha_logit=2.0, alpha_attn=0.5)
    total = weighted_total({"logit": torch.tensor(1.0), "attn": torch.tensor(2.0), "task": torch.tensor(3.0)}, cfg)
    assert total.item() == pytest.approx(2 + 1 + 3)
    with pytest.raises(ElasticLMError, match="unknown loss"):
        weighted_total({"bogus": torch.tensor(1.0)}, cfg)

"""Distillation losses against naive per-row loops (float64), their invariances, padding, gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elasticlm.distill.losses import (DistillConfig, HiddenProjection, attention_loss, attention_losses,
                                      attention_scale, hidden_loss, layer_map, logit_loss, pearson_distance,
                                      weighted_total)
from elasticlm.distill.teachers import teacher_layer
from elasticlm.errors import ElasticLMError


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rho(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def ragged_mask(B=3, N=7) -> torch.Tensor:
    mask = torch.ones(B, N, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return mask


def probs(B, H, N, mask, g) -> torch.Tensor:
    """Softmax rows over the real keys; padded keys get junk (not zero), which must not matter."""
    scores = torch.randn(B, H, N, N, generator=g)
    p = scores.masked_fill(~mask.bool()[:, None, None, :], -1e9).softmax(-1)
    return torch.where(mask.bool()[:, None, None, :], p, torch.rand(B, H, N, N, generator=g))


def naive_rows(s, t, mask) -> float:
    """mean over real rows of 1 − ρ; s, t: B×N×D."""
    B, N, _ = s.shape
    return float(np.mean([1 - rho(s[b, n], t[b, n]) for b in range(B) for n in range(N) if mask[b, n]]))


def naive_attention(s, t, mask) -> float:
    """mean over heads and real queries of 1 − ρ over the real keys; s, t: B×H×N×N."""
    vals = []
    for b in range(s.shape[0]):
        keys = [k for k in range(s.shape[-1]) if mask[b, k]]
        vals += [1 - rho(s[b, h, q, keys], t[b, h, q, keys]) for h in range(s.shape[1])
                 for q in range(s.shape[2]) if mask[b, q]]
    return float(np.mean(vals))


def test_logit_loss_equals_a_naive_loop():
    g, mask = gen(1), ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=g), torch.randn(3, 7, 11, generator=g)
    assert logit_loss(s, t, mask).item() == pytest.approx(naive_rows(s, t, mask), abs=1e-5)
    rows_s, rows_t = s[mask.bool()], t[mask.bool()]  # R×C: every row counts
    ref = np.mean([1 - rho(a, b) for a, b in zip(rows_s, rows_t)])
    assert logit_loss(rows_s, rows_t).item() == pytest.approx(ref, abs=1e-5)
    assert logit_loss(rows_s, rows_t).item() == pytest.approx(logit_loss(s, t, mask).item(), abs=1e-6)


def test_hidden_loss_equals_a_naive_loop():
    g, mask = gen(2), ragged_mask(4, 9)
    mask[3, 1:] = 0
    s, t = torch.randn(4, 9, 16, generator=g) * 3 + 1, torch.randn(4, 9, 16, generator=g)
    assert hidden_loss(s, t, mask).item() == pytest.approx(naive_rows(s, t, mask), abs=1e-5)
    ones = torch.ones(4, 9)
    assert hidden_loss(s, t).item() == pytest.approx(naive_rows(s, t, ones), abs=1e-5)
    assert hidden_loss(s, t, mask.bool()).item() == pytest.approx(naive_rows(s, t, mask), abs=1e-5)


def test_attention_loss_equals_a_naive_loop_over_real_queries_and_keys():
    g, mask = gen(3), ragged_mask()
    s, t = probs(3, 4, 7, mask, g), probs(3, 4, 7, mask, g)
    loss = attention_loss(s, t, mask).item()
    assert loss == pytest.approx(naive_attention(s, t, mask), abs=1e-5)
    # padded keys are left out of the correlation, not treated as zeros
    keys = mask.bool()[:, None, None, :]
    zeros = naive_attention(torch.where(keys, s, 0), torch.where(keys, t, 0), torch.ones(3, 7))
    assert abs(loss - zeros) > 1e-3
    full = torch.ones(3, 7, dtype=torch.long)
    s2, t2 = probs(3, 4, 7, full, g), probs(3, 4, 7, full, g)
    ref = naive_attention(s2, t2, full)
    assert attention_loss(s2, t2, full).item() == pytest.approx(ref, abs=1e-5)
    assert attention_loss(s2, t2).item() == pytest.approx(ref, abs=1e-5)


def test_identical_inputs_give_zero():
    g, mask = gen(4), ragged_mask()
    x = torch.randn(3, 7, 11, generator=g)
    assert logit_loss(x, x, mask).item() == pytest.approx(0, abs=1e-6)
    assert hidden_loss(x, x, mask).item() == pytest.approx(0, abs=1e-6)
    assert pearson_distance(x, x).abs().max().item() < 1e-6
    p = probs(3, 4, 7, mask, g)
    assert attention_loss(p, p, mask).item() == pytest.approx(0, abs=1e-6)
    assert attention_loss(p, p).item() == pytest.approx(0, abs=1e-6)
    # tiny but real variation is still resolved (eps does not swamp near-uniform attention rows)
    flat = torch.full((1, 1, 4, 64), 1 / 64) + 1e-4 * torch.randn(1, 1, 4, 64, generator=g)
    assert attention_loss(flat, flat).item() == pytest.approx(0, abs=1e-5)
    assert attention_loss(flat, flat.flip(-1)).item() > 0.5
    peaky = torch.randn(1, 1, 4, 64, generator=g).softmax(-1)
    tiny = peaky * 1e-4 + 1 / 64  # a near-uniform student with the teacher's shape
    assert attention_loss(tiny, peaky).item() == pytest.approx(0, abs=1e-5)


def test_invariant_to_a_positive_scale_and_shift_per_row():
    g, mask = gen(5), ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=g), torch.randn(3, 7, 11, generator=g)
    scale, shift = torch.rand(3, 7, 1, generator=g) * 4 + 0.25, torch.randn(3, 7, 1, generator=g) * 5
    for fn in (logit_loss, hidden_loss):
        base = fn(s, t, mask).item()
        assert base > 0.3
        assert fn(s * scale + shift, t, mask).item() == pytest.approx(base, abs=1e-5)
        assert fn(t * scale + shift, t, mask).item() == pytest.approx(0, abs=1e-5)
        assert fn(-t, t, mask).item() == pytest.approx(2, abs=1e-5)  # a negative scale is not free
    ps, pt = probs(3, 4, 7, mask, g), probs(3, 4, 7, mask, g)
    row_scale = torch.rand(3, 4, 7, 1, generator=g) * 4 + 0.25  # per query row, over the real keys
    row_shift = torch.randn(3, 4, 7, 1, generator=g)
    base = attention_loss(ps, pt, mask).item()
    assert base > 0.1
    assert attention_loss(ps * row_scale + row_shift, pt, mask).item() == pytest.approx(base, abs=1e-5)
    assert attention_loss(pt * row_scale + row_shift, pt, mask).item() == pytest.approx(0, abs=1e-5)


def test_padding_never_counts():
    g, mask = gen(6), ragged_mask()
    pad = ~mask.bool()
    s, t = torch.randn(3, 7, 11, generator=g), torch.randn(3, 7, 11, generator=g)
    s2, t2 = s.clone(), t.clone()
    s2[pad], t2[pad] = torch.randn(int(pad.sum()), 11, generator=g) * 1e3, -7.0
    for kind in ("relational", "classic"):
        for fn in (logit_loss, hidden_loss):
            torch.testing.assert_close(fn(s2, t2, mask, kind=kind), fn(s, t, mask, kind=kind))
    ps, pt = probs(3, 4, 7, mask, g), probs(3, 4, 7, mask, g)
    ps2, pt2 = ps.clone(), pt.clone()
    pad_keys = pad[:, None, None, :].expand_as(ps2)
    ps2[pad_keys] = torch.rand(int(pad_keys.sum()), generator=g) * 50
    pt2[pad_keys] = 0.1
    pad_queries = pad[:, None, :, None].expand_as(ps2)
    ps2[pad_queries] = torch.rand(int(pad_queries.sum()), generator=g)
    pt2[pad_queries] = 3.0
    for kind in ("relational", "classic"):
        torch.testing.assert_close(attention_loss(ps2, pt2, mask, kind=kind), attention_loss(ps, pt, mask, kind=kind))
    # and padded student entries get no gradient
    ps2.requires_grad_(True)
    attention_loss(ps2, pt2, mask).backward()
    assert (ps2.grad[pad_keys | pad_queries] == 0).all() and ps2.grad.abs().sum() > 0


def test_head_count_mismatch_compares_head_averaged_maps():
    g, mask = gen(7), ragged_mask()
    s, t = probs(3, 2, 7, mask, g), probs(3, 6, 7, mask, g)
    ref = naive_attention(s.mean(1, keepdim=True), t.mean(1, keepdim=True), mask)
    assert attention_loss(s, t, mask).item() == pytest.approx(ref, abs=1e-5)
    assert attention_loss(s, t[:, :3].repeat(1, 2, 1, 1)[:, [0, 3, 1, 4, 2, 5]], mask).item() == pytest.approx(
        naive_attention(s.mean(1, keepdim=True), t[:, :3].mean(1, keepdim=True), mask), abs=1e-5)
    sq = ((s.mean(1) - t.mean(1)) ** 2)[mask.bool()[:, :, None] & mask.bool()[:, None, :]].mean()
    torch.testing.assert_close(attention_loss(s, t, mask, kind="classic"), sq)


def test_classic_losses_equal_torch_on_real_rows():
    g, mask = gen(8), ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=g) * 3, torch.randn(3, 7, 11, generator=g) * 3
    rows_s, rows_t = s[mask.bool()], t[mask.bool()]
    for T in (1.0, 2.0, 0.5):
        ref = F.kl_div(F.log_softmax(rows_s / T, -1), F.softmax(rows_t / T, -1), reduction="batchmean") * T * T
        torch.testing.assert_close(logit_loss(s, t, mask, kind="classic", temperature=T), ref)
        torch.testing.assert_close(logit_loss(rows_s, rows_t, kind="classic", temperature=T), ref)
    torch.testing.assert_close(hidden_loss(s, t, mask, kind="classic"), F.mse_loss(rows_s, rows_t))
    ps, pt = probs(3, 4, 7, mask, g), probs(3, 4, 7, mask, g)
    vals = [float(ps[b, h, q, k] - pt[b, h, q, k]) ** 2 for b in range(3) for h in range(4) for q in range(7)
            for k in range(7) if mask[b, q] and mask[b, k]]
    assert attention_loss(ps, pt, mask, kind="classic").item() == pytest.approx(np.mean(vals), rel=1e-5)
    torch.testing.assert_close(attention_loss(ps, pt, kind="classic"), F.mse_loss(ps, pt))


def test_classic_attention_is_calibrated_to_the_size_of_the_relational_term():
    """Unrelated maps: the probability MSE alone is ~100x smaller than 1 − ρ (the classic ablation would
    have no attention distillation to speak of); times `attention_scale` both start at the same size."""
    g = gen(21)
    for mask in (torch.ones(3, 24, dtype=torch.long), ragged_mask(3, 24)):
        s_maps = [probs(3, 4, 24, mask, g) for _ in range(3)]
        t_maps = [probs(3, 4, 24, mask, g) for _ in range(2)]
        lmap = [1, 1, 2]
        rel = attention_losses(s_maps, t_maps, lmap, mask).item()
        cls = attention_losses(s_maps, t_maps, lmap, mask, kind="classic").item()
        assert cls < rel / 50  # before: not the same size at all
        scale = attention_scale(s_maps, t_maps, lmap, mask)
        assert 0.5 < scale * cls / rel < 2.0 and scale * cls == pytest.approx(rel, rel=1e-5)
        # the weighted classic term against a naive loop (mean squared difference over real query × key)
        m = mask.bool()
        naive = np.mean([np.mean([float(s_maps[l][b, h, q, k] - t_maps[lmap[l] - 1][b, h, q, k]) ** 2
                                  for b in range(3) for h in range(4) for q in range(24) for k in range(24)
                                  if m[b, q] and m[b, k]]) for l in range(3)])
        assert scale * cls == pytest.approx(scale * naive, rel=1e-4)
    same = [probs(1, 2, 5, torch.ones(1, 5), g)]
    assert attention_scale(same, same, [1]) == 1.0  # nothing to calibrate on: weight 1


def test_one_output_regression_uses_mse_whatever_the_kind():
    g = gen(9)
    s, t = torch.randn(5, 1, generator=g), torch.randn(5, 1, generator=g)
    for kind in ("relational", "classic"):
        torch.testing.assert_close(logit_loss(s, t, kind=kind), F.mse_loss(s, t))
        torch.testing.assert_close(logit_loss(s[:, 0], t[:, 0], kind=kind), F.mse_loss(s, t))
    keep = torch.tensor([1, 0, 1, 1, 0])
    torch.testing.assert_close(logit_loss(s, t, keep), F.mse_loss(s[keep.bool()], t[keep.bool()]))


def test_gradients_reach_the_student_and_stay_finite():
    g, mask = gen(10), ragged_mask()
    t = torch.randn(3, 7, 8, generator=g)
    s = torch.randn(3, 7, 8, generator=g, requires_grad=True)
    (logit_loss(s, t, mask) + hidden_loss(s, t, mask)).backward()
    assert s.grad[mask.bool()].abs().sum() > 0 and (s.grad[~mask.bool()] == 0).all()
    # constant student rows: distance 1, finite gradient
    const = torch.full((3, 7, 8), 0.3, requires_grad=True)
    loss = hidden_loss(const, t, mask) + logit_loss(const, t, mask)
    loss.backward()
    assert loss.item() == pytest.approx(2.0, abs=1e-5) and torch.isfinite(const.grad).all()
    p_t = probs(3, 4, 7, mask, g)
    p_c = torch.full((3, 4, 7, 7), 1 / 7, requires_grad=True)  # uniform: constant over any key set
    loss = attention_loss(p_c, p_t, mask)
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(p_c.grad).all()
    # no real row at all: a zero that is still part of the student's graph
    empty = torch.zeros(3, 7, dtype=torch.long)
    for kind in ("relational", "classic"):
        s2 = torch.randn(3, 7, 8, generator=g, requires_grad=True)
        p2 = torch.rand(3, 4, 7, 7, generator=g, requires_grad=True)
        for loss, x in ((hidden_loss(s2, t, empty, kind=kind), s2), (logit_loss(s2, t, empty, kind=kind), s2),
                        (logit_loss(s2[:0, 0], t[:0, 0], kind=kind), s2),
                        (attention_loss(p2, p_t, empty, kind=kind), p2)):
            assert loss.item() == 0 and loss.grad_fn is not None
            x.grad = None
            loss.backward()
            assert x.grad is not None and (x.grad == 0).all()


def test_float32_from_bf16_and_under_autocast():
    g, mask = gen(11), ragged_mask()
    s, t = torch.randn(3, 7, 11, generator=g), torch.randn(3, 7, 11, generator=g)
    ps, pt = probs(3, 4, 7, mask, g), probs(3, 4, 7, mask, g)
    sb, tb, psb, ptb = s.bfloat16(), t.bfloat16(), ps.bfloat16(), pt.bfloat16()
    cases = [(logit_loss, sb, tb), (hidden_loss, sb, tb), (attention_loss, psb, ptb)]
    for fn, a, b in cases:
        out = fn(a, b, mask)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, fn(a.float(), b.float(), mask))  # same bf16 values, fp32 maths
    assert pearson_distance(sb, tb).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention_loss(ps, pt, mask)
        assert out.dtype == torch.float32
    torch.testing.assert_close(out, attention_loss(ps, pt, mask))


def test_bad_shapes_and_kinds_are_user_errors():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ElasticLMError, match="kind"):
        logit_loss(x, x, kind="kl")
    with pytest.raises(ElasticLMError, match="shape"):
        hidden_loss(x, torch.zeros(2, 3, 5))
    with pytest.raises(ElasticLMError, match="mask"):
        hidden_loss(x, x, torch.ones(2, 4))
    with pytest.raises(ElasticLMError, match="B×H×N×N"):
        attention_loss(torch.zeros(2, 1, 3, 3), torch.zeros(2, 1, 4, 4))


def test_config_validation_names_the_field():
    DistillConfig().validate()
    DistillConfig(kind="classic", alpha_attn=0, temperature=4).validate()
    DistillConfig(classic_attn_scale=3.0, projection="layer").validate()
    with pytest.raises(ElasticLMError, match="distill.kind"):
        DistillConfig(kind="kl").validate()
    for field in ("alpha_logit", "alpha_attn", "alpha_hidden", "alpha_task"):
        with pytest.raises(ElasticLMError, match=field):
            DistillConfig(**{field: -1.0}).validate()
        with pytest.raises(ElasticLMError, match=field):
            DistillConfig(**{field: float("nan")}).validate()
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ElasticLMError, match="temperature"):
            DistillConfig(temperature=bad).validate()
        with pytest.raises(ElasticLMError, match="classic_attn_scale"):
            DistillConfig(classic_attn_scale=bad).validate()
    with pytest.raises(ElasticLMError, match="distill.projection"):
        DistillConfig(projection="head").validate()


def test_layer_map_rounds_halves_up():
    assert layer_map(4, 6) == [2, 3, 5, 6]  # 1.5 -> 2 and 4.5 -> 5 (banker's rounding would give 4)
    assert layer_map(12, 6) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert layer_map(6, 12) == [2, 4, 6, 8, 10, 12]
    assert layer_map(5, 2) == [1, 1, 1, 2, 2]
    assert layer_map(3, 3) == [1, 2, 3] and layer_map(1, 30) == [30]
    for L, Lt in ((4, 6), (12, 6), (7, 30), (10, 3)):
        assert layer_map(L, Lt) == [teacher_layer(l, L, Lt) for l in range(1, L + 1)]
    with pytest.raises(ElasticLMError):
        layer_map(0, 6)


def test_hidden_projection_init_and_shapes():
    proj = HiddenProjection(3, 64, 96, generator=gen(0))
    assert len(proj.layers) == 3 and proj(2, torch.randn(2, 4, 64)).shape == (2, 4, 96)
    w = torch.cat([lin.weight.flatten() for lin in proj.layers])
    assert w.std().item() == pytest.approx(0.02, rel=0.05) and abs(w.mean().item()) < 1e-3
    assert all((lin.bias == 0).all() for lin in proj.layers)
    same, other = HiddenProjection(3, 64, 96, generator=gen(0)), HiddenProjection(3, 64, 96, generator=gen(1))
    assert torch.equal(same.layers[1].weight, proj.layers[1].weight)
    assert not torch.equal(other.layers[1].weight, proj.layers[1].weight)
    assert not torch.equal(proj.layers[0].weight, proj.layers[1].weight)


def test_hidden_projection_per_block_is_one_linear_per_layer_and_candidate():
    cands = [("bert", "none"), ("bert", "qv"), ("mobile", "kv")]
    proj = HiddenProjection(2, 8, 12, generator=gen(0), candidates=cands)
    assert len(proj.layers) == 6 and proj.index(1, ("bert", "qv")) == 4
    h = torch.randn(1, 3, 8)
    torch.testing.assert_close(proj(1, h, ("mobile", "kv")), proj.layers[5](h))
    with pytest.raises(ElasticLMError, match="candidates"):
        proj(0, h)
    per_layer, old = HiddenProjection(2, 8, 12, generator=gen(0)), HiddenProjection(2, 8, 12, generator=gen(0))
    assert per_layer.index(1, ("mobile", "kv")) == 1  # per layer: the block is ignored
    torch.testing.assert_close(per_layer(1, h, ("mobile", "kv")), old(1, h))


def test_weighted_total_sums_the_present_losses():
    cfg = DistillConfig(alpha_logit=2.0, alpha_attn=0.5, alpha_hidden=3.0, alpha_task=1.5)
    x = torch.tensor(2.0, requires_grad=True)
    total = weighted_total({"logit": x * 1.0, "attn": torch.tensor(2.0), "task": torch.tensor(3.0)}, cfg)
    assert total.item() == pytest.approx(2 * 2 + 0.5 * 2 + 1.5 * 3)
    total.backward()
    assert x.grad.item() == pytest.approx(2.0)
    assert weighted_total({"hidden": torch.tensor(1.0)}, cfg).item() == pytest.approx(3.0)
    with pytest.raises(ElasticLMError, match="unknown loss"):
        weighted_total({"bogus": torch.tensor(1.0)}, cfg)


def test_binary_logits_use_kl_because_pearson_is_flat_there():
    g = gen(11)
    s = torch.randn(6, 2, generator=g, requires_grad=True)
    t = torch.randn(6, 2, generator=g)
    loss = logit_loss(s, t)  # relational by default
    ref = F.kl_div(F.log_softmax(s, -1), F.softmax(t, -1), reduction="batchmean")
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert s.grad.abs().sum() > 0
    flat = pearson_distance(s.detach().requires_grad_(), t)
    assert set(flat.round().tolist()) <= {0.0, 2.0}  # why: two-element rows correlate at ±1


def test_written_out_gradient_equals_autograd_through_the_plain_formula():
    # a teacher without a graph takes the one-node path (`_PearsonToTeacher`); a teacher that requires
    # grad takes plain autograd through the same formula: values and the student's gradient must agree
    g, mask = gen(21), ragged_mask()
    for heads_t in (4, 2):  # equal head counts, and head-averaged maps
        for m in (mask, None):
            ps = probs(3, 4, 7, mask, g).double().requires_grad_(True)
            pt = probs(3, heads_t, 7, mask, g)
            ps.data[0, 0, 1] = 1 / 7  # a constant student row (clamped denominator)
            fast = attention_loss(ps, pt, m)
            (grad_fast,) = torch.autograd.grad(fast, ps)
            plain = attention_loss(ps, pt.clone().requires_grad_(True), m)
            (grad_plain,) = torch.autograd.grad(plain, ps)
            torch.testing.assert_close(fast, plain)
            torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-4, atol=1e-6)
    s, t = torch.randn(5, 9, generator=g, requires_grad=True), torch.randn(5, 9, generator=g)
    (gs,) = torch.autograd.grad(pearson_distance(s, t).sum(), s)
    (gp,) = torch.autograd.grad(pearson_distance(s, t.clone().requires_grad_(True)).sum(), s)
    torch.testing.assert_close(gs, gp)


def test_attention_losses_is_the_mean_of_the_layers_with_shared_teacher_maps():
    g, mask = gen(22), ragged_mask()
    s_maps = [probs(3, 4, 7, mask, g) for _ in range(4)]
    t_maps = [probs(3, 4, 7, mask, g) for _ in range(2)]
    lmap = layer_map(4, 2)
    for kind in ("relational", "classic"):
        ref = sum(attention_loss(s_maps[l], t_maps[lmap[l] - 1], mask, kind=kind) for l in range(4)) / 4
        torch.testing.assert_close(attention_losses(s_maps, t_maps, lmap, mask, kind=kind), ref)

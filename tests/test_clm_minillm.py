"""MiniLLM losses: the exact single-step reverse KL against a naive loop, its gradient against
finite differences, returns, importance weights and the policy-gradient sign."""

from __future__ import annotations

import math

import torch

from elasticlm.distill.minillm import (importance_weights, minillm_losses, mix_logprobs, policy_gradient_loss,
                                       returns, reverse_kl, single_step_loss)


def naive_reverse_kl(s, t):
    out = torch.zeros(s.shape[:-1], dtype=torch.float64)
    for b in range(s.shape[0]):
        for n in range(s.shape[1]):
            zs = sum(math.exp(x) for x in s[b, n].tolist())
            zt = sum(math.exp(x) for x in t[b, n].tolist())
            kl = 0.0
            for v in range(s.shape[2]):
                q = math.exp(s[b, n, v].item()) / zs
                p = math.exp(t[b, n, v].item()) / zt
                kl += q * (math.log(q) - math.log(p))
            out[b, n] = kl
    return out


def test_single_step_equals_naive_reference():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 7, generator=g, dtype=torch.float64) * 2
    t = torch.randn(2, 3, 7, generator=g, dtype=torch.float64) * 2
    torch.testing.assert_close(reverse_kl(s, t), naive_reverse_kl(s, t))
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    w = torch.rand(2, 3, generator=g, dtype=torch.float64)
    ref = naive_reverse_kl(s, t)
    want = (ref * w * mask).sum() / mask.sum()
    torch.testing.assert_close(single_step_loss(s, t, mask, w), want)
    assert reverse_kl(t, t).abs().max() < 1e-12  # zero when equal
    assert (reverse_kl(s, t) > 0).all()


def test_single_step_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 0], [1, 1]])
    assert torch.autograd.gradcheck(lambda x: single_step_loss(x, t, mask), (s,), eps=1e-6, atol=1e-6)
    single_step_loss(s, t, mask).backward()
    eps, i = 1e-6, (1, 1, 3)
    plus, minus = s.detach().clone(), s.detach().clone()
    plus[i] += eps
    minus[i] -= eps
    fd = (single_step_loss(plus, t, mask) - single_step_loss(minus, t, mask)) / (2 * eps)
    assert abs(fd.item() - s.grad[i].item()) < 1e-6
    assert s.grad[0, 1].abs().max() == 0  # masked position gets no gradient


def test_returns_are_length_normalised_future_means():
    r = torch.tensor([[1.0, 2.0, 3.0, 5.0], [4.0, -2.0, 9.0, 9.0]])
    m = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    got = returns(r, m)
    torch.testing.assert_close(got, torch.tensor([[10 / 3, 4.0, 5.0, 0.0], [-2.0, 0.0, 0.0, 0.0]]))


def test_mix_and_importance_weights():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 2, 6, generator=g), torch.randn(1, 2, 6, generator=g)
    lp = mix_logprobs(s, t, 0.2)
    want = torch.log(0.2 * t.softmax(-1) + 0.8 * s.softmax(-1))
    torch.testing.assert_close(lp, want)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(1, 2))
    tok = torch.tensor([[1, 4]])
    s_lp = s.log_softmax(-1).gather(-1, tok[..., None])[..., 0]
    w = importance_weights(s_lp, lp.gather(-1, tok[..., None])[..., 0], clip=100.0)
    torch.testing.assert_close(w, s.softmax(-1).gather(-1, tok[..., None])[..., 0]
                               / (0.2 * t.softmax(-1) + 0.8 * s.softmax(-1)).gather(-1, tok[..., None])[..., 0])
    assert torch.allclose(mix_logprobs(s, t, 0.0), s.log_softmax(-1))


def test_policy_gradient_raises_well_rewarded_tokens():
    logits = torch.zeros(1, 2, 4, requires_grad=True)
    tok = torch.tensor([[2, 3]])
    lp = logits.log_softmax(-1).gather(-1, tok[..., None])[..., 0]
    loss = policy_gradient_loss(lp, torch.tensor([[1.0, -1.0]]), torch.ones(1, 2))
    loss.backward()
    assert logits.grad[0, 0, 2] < 0 and logits.grad[0, 1, 3] > 0  # a descent step raises token 2, lowers token 3


def test_minillm_losses_backpropagate_into_student_only():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 5, 11, generator=g, requires_grad=True)
    t = torch.randn(2, 5, 11, generator=g, requires_grad=True)
    tok = torch.randint(0, 11, (2, 5), generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 0]])
    out = minillm_losses(s, t, tok, mask, mix=0.2, baseline=0.1)
    assert set(out) == {"single", "long", "reward", "return"}
    (out["single"] + out["long"]).backward()
    assert t.grad is None and s.grad.abs().sum() > 0
    assert s.grad[1, 4].abs().max() == 0 and s.grad[0, 0].abs().max() == 0

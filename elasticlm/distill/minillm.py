"""MiniLLM-style reverse-KL distillation for causal LMs, as plain functions (the causal pipeline
is `elasticlm.clm.pipeline`).

The student q is trained to lower KL(q || p) against the teacher p on responses y sampled from a mix
of the two (`mix_logprobs`: mix·p + (1 - mix)·q, mix = 0.2 by default). Its gradient splits in two:

    single-step part   at every response position t, the exact reverse KL of the next-token
                       distributions, sum_v q(v) (log q(v) - log p(v)), differentiated through q
                       (`reverse_kl`, `single_step_loss`)
    long-term part     a policy gradient: the reward of token t is r_t = log p(y_t) - log q(y_t); the
                       return of step t is the mean reward of the tokens after it (length-normalised);
                       the loss is -w_t (R_t - b) log q(y_t) with a baseline b (`returns`,
                       `policy_gradient_loss`)

w_t = q(y_t) / mix(y_t) are per-token importance weights that correct for sampling from the mix
(clipped, no gradient). Shapes: B batch, N positions, V vocabulary; masks are 1 on response tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1)


def reverse_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(q || p) per position, exact over the vocabulary: B×N×V, B×N×V -> B×N (float32 or wider).
    Gradient flows into the student only."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    log_q = F.log_softmax(student_logits.to(dtype), -1)
    log_p = F.log_softmax(teacher_logits.detach().to(dtype), -1)
    return (log_q.exp() * (log_q - log_p)).sum(-1)


def single_step_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean over positions of w_t · KL(q_t || p_t) (w = 1 when None): a scalar."""
    kl = reverse_kl(student_logits, teacher_logits)  # B×N
    if weights is not None:
        kl = kl * weights.detach()
    return _masked_mean(kl, mask)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[tokens]: B×N×V, B×N -> B×N (float32)."""
    return F.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def mix_logprobs(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mix: float) -> torch.Tensor:
    """log(mix · p + (1 - mix) · q) over the vocabulary: B×...×V (no gradient)."""
    log_q = F.log_softmax(student_logits.detach().float(), -1)
    log_p = F.log_softmax(teacher_logits.detach().float(), -1)
    if mix <= 0:
        return log_q
    if mix >= 1:
        return log_p
    return torch.logaddexp(log_p + torch.log(torch.tensor(mix)), log_q + torch.log(torch.tensor(1 - mix)))


def importance_weights(student_lp: torch.Tensor, mix_lp: torch.Tensor, clip: float = 2.0) -> torch.Tensor:
    """w_t = q(y_t) / mix(y_t), clipped to [0, clip], no gradient: B×N."""
    return (student_lp.detach() - mix_lp.detach()).exp().clamp(max=clip)


def returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-normalised return of every position: the mean of the masked rewards after t (0 when
    none follow). B×N -> B×N, no gradient."""
    r = rewards.detach().float() * mask
    m = mask.float()
    after = r.flip(-1).cumsum(-1).flip(-1) - r  # sum over t' > t
    count = m.flip(-1).cumsum(-1).flip(-1) - m
    return torch.where(count > 0, after / count.clamp(min=1), torch.zeros_like(after))


def policy_gradient_loss(student_lp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """-mean_t w_t · A_t · log q(y_t) over the masked positions (A = return - baseline, no gradient)."""
    a = advantages.detach()
    if weights is not None:
        a = a * weights.detach()
    return -_masked_mean(a * student_lp, mask)


def minillm_losses(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tokens: torch.Tensor,
                   mask: torch.Tensor, *, mix: float = 0.2, baseline: float = 0.0,
                   clip: float = 2.0) -> dict[str, torch.Tensor]:
    """Both parts for one batch of sampled responses. `student_logits`/`teacher_logits` B×N×V are the
    predictions for `tokens` B×N (already shifted: position t predicts tokens[:, t]); `mask` B×N is 1
    on response tokens. Returns {"single", "long", "reward" (mean r_t), "return" (mean R_t)}."""
    mask = mask.float()
    s_lp = token_logprobs(student_logits, tokens)  # B×N
    t_lp = token_logprobs(teacher_logits.detach(), tokens)
    mix_lp = mix_logprobs(student_logits, teacher_logits, mix).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    w = importance_weights(s_lp, mix_lp, clip)
    rewards = (t_lp - s_lp).detach()
    ret = returns(rewards, mask)
    return {
        "single": single_step_loss(student_logits, teacher_logits, mask, w),
        "long": policy_gradient_loss(s_lp, ret - baseline, mask, w),
        "reward": _masked_mean(rewards, mask),
        "return": _masked_mean(ret, mask),
    }

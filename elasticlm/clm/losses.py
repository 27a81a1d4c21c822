"""Next-token loss (and teacher-logit KL) through the vocabulary projection, a slice of rows at a time.

The plain way, `lm_head(h)` -> B×N×V logits -> cross-entropy, holds several full B×N×V float32
buffers at once (logits, their log-softmax, the gradient; the KL adds the teacher's). At V = 49,152 a
batch of 8×128 tokens makes each one 200 MB, which the allocator maps and unmaps from the kernel on
every step: `clm pretrain` spent as much time in the kernel (page faults) as in arithmetic.

`head_loss` computes the same values `rows` tokens at a time. Each slice's logits live only while that
slice is processed: the loss of the slice and its gradient with respect to the logits
(softmax − target) are formed there and then, and immediately turned into the gradients of the
inputs, the weight and the bias, which `backward` only scales. The vocabulary projection is
multiplied once forward and twice backward, as in the plain path: nothing is recomputed.

Shapes: M rows (tokens that have a target), e input features, V vocabulary (V_t ≥ V for a teacher
whose logits have padding entries at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from elasticlm.errors import ElasticLMError
from elasticlm.models.blocks import compute_dtype

TeacherRows = Callable[[int, int], torch.Tensor]
"""teacher(start, end) -> the teacher's logits of rows start..end-1, (end − start)×V_t."""


def default_rows(vocab: int, budget_bytes: int = 16 << 20) -> int:
    """Rows per slice so that one float32 slice of logits stays within `budget_bytes`: buffers below
    glibc's largest mmap threshold (32 MB) are reused from the heap instead of mapped afresh. At
    V = 49,152 (85 rows) a demo-size step (8×128 tokens, d=192) took 3.3 s user + 0.3 s system per 5
    steps on one thread, against 3.2 s + 2.2 s for the plain loss; 8 MB slices cost 20% more user time,
    64 MB slices 1.2 s of system time."""
    return max(16, budget_bytes // (4 * vocab))


class _HeadLoss(torch.autograd.Function):
    """(1 − w)·CE(x·Wᵀ + b, targets) + w·KL(p_teacher ‖ softmax(x·Wᵀ + b)), means over the M rows."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, teacher, kd_weight: float, rows: int, grads: bool):
        M = x.shape[0]
        cd = compute_dtype(x)  # what autocast (when on) would multiply in, as the plain head does
        xc, wc = x.to(cd), weight.to(cd)  # cast once, not once per slice
        bc = bias.to(cd) if bias is not None else None
        gx = torch.empty(x.shape if grads else (0,), dtype=cd, device=x.device)
        gw = torch.zeros(weight.shape if grads else (0,), dtype=torch.float32, device=weight.device)  # V×e, summed
        gb = torch.zeros(weight.shape[0] if grads else 0, dtype=torch.float32, device=weight.device) \
            if bias is not None else None
        ce_sum = torch.zeros((), dtype=torch.float32, device=x.device)
        kd_sum = torch.zeros((), dtype=torch.float32, device=x.device)
        w_ce = 1.0 - kd_weight if teacher is not None else 1.0
        with torch.autocast(x.device.type, enabled=False):
            for start in range(0, M, rows):
                end = min(start + rows, M)
                xs, t = xc[start:end], targets[start:end, None]  # R×e, R×1
                logp = F.log_softmax(F.linear(xs, wc, bc).float(), -1)  # R×V float32
                ce_sum += -logp.gather(-1, t).sum()
                if teacher is not None and kd_weight > 0:
                    t_logp = F.log_softmax(teacher(start, end).float()[:, :logp.shape[-1]], -1)
                    t_p = t_logp.exp()
                    kd_sum += (t_p * (t_logp - logp)).sum()
                if not grads:
                    continue
                grad = logp.exp()  # the softmax; d(loss)/d(logits) once the targets are taken off
                if teacher is not None and kd_weight > 0:
                    grad -= kd_weight * t_p
                grad.scatter_add_(-1, t, torch.full(t.shape, -w_ce, device=grad.device))
                grad /= M
                g = grad.to(cd)
                gx[start:end] = g @ wc  # R×e
                gw += (g.transpose(0, 1) @ xs).float()  # V×e
                if gb is not None:
                    gb += grad.sum(0)
        ce, kd = ce_sum / M, kd_sum / M
        total = w_ce * ce + kd_weight * kd  # a tensor of its own: ce and kd carry no gradient
        ctx.save_for_backward(gx, gw, gb if gb is not None else torch.empty(0))
        ctx.dtypes = (x.dtype, weight.dtype, bias.dtype if bias is not None else None)
        ctx.mark_non_differentiable(ce, kd)
        return total, ce, kd

    @staticmethod
    def backward(ctx, g_total, _g_ce, _g_kd):
        gx, gw, gb = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        return ((gx * g_total).to(x_dtype), (gw * g_total).to(w_dtype),
                (gb * g_total).to(b_dtype) if b_dtype is not None else None, None, None, None, None, None)


def head_loss(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor, *,
              teacher: TeacherRows | None = None, kd_weight: float = 0.0,
              rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, ce, kd) of the logits x·Wᵀ + b without holding them whole.

    x: M×e features entering the vocabulary projection; weight: V×e; bias: V or None; targets: M
    token ids. ce is the mean next-token cross-entropy, kd the mean KL(p_teacher ‖ p_student) over
    the vocabulary (0 without a teacher), total = (1 − kd_weight)·ce + kd_weight·kd (ce alone
    without a teacher). Only total carries gradients. The values equal the plain computation on the
    full logits; `rows` tokens are processed at a time (default: `default_rows`)."""
    if x.dim() != 2 or targets.shape != x.shape[:1]:
        raise ElasticLMError(f"head_loss needs M×e features and M targets, got {tuple(x.shape)} and {tuple(targets.shape)}")
    if not 0 <= kd_weight <= 1:
        raise ElasticLMError(f"kd_weight={kd_weight!r} must be in [0, 1]")
    if x.shape[0] == 0:
        zero = (x.sum() + weight.sum() * 0.0).float() * 0.0
        return zero, zero.detach(), zero.detach()
    rows = rows or default_rows(weight.shape[0])
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    return _HeadLoss.apply(x, weight, bias, targets, teacher, float(kd_weight), int(rows), grads)

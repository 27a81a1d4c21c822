"""Distillation losses as plain functions (no trainer state).

Relational losses (the default) compare the *shape* of each row rather than its values: for a
teacher row t and a student row s (a logit vector, one token's hidden state, one query's attention
over the keys) the loss is 1 − ρ(t, s), ρ the Pearson correlation, averaged over the real rows. A
student row that is a positive scale and shift of the teacher's costs nothing, so a small block is
free to keep its own scale while matching the teacher's relations.

    logit_loss      logit rows (vocabulary at masked positions for MLM; classes for a task);
                    one output (regression) -> MSE whatever the kind
    hidden_loss     per token, the student's block output projected by a learned Linear(d, d_t)
    attention_loss  attention-probability rows over the real keys, real query rows only;
                    head-averaged maps when the head counts differ

Classic losses (ablation): KL(teacher ‖ student) with temperature T on logits, times T²; MSE on
projected hidden states and on attention probabilities.

Masks: `mask` / `attention_mask` are B×N with 1 (or True) for real tokens. Every loss is computed in
float32 whatever the inputs' dtype (bf16 under autocast), and a mask with no real row gives a zero
that is still connected to the student's graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elasticlm.errors import ElasticLMError

KINDS = ("relational", "classic")


@dataclass
class DistillConfig:
    """Which losses, and how they are weighted into the total."""

    kind: str = "relational"
    """"relational" (1 − Pearson ρ per row) or "classic" (KL with temperature + MSE; ablation)."""
    alpha_logit: float = 1.0
    """Weight of the logit loss (0 turns it off; a teacher without a matching head has none)."""
    alpha_attn: float = 1.0
    """Weight of the attention-probability loss (0 turns it off and skips the captures)."""
    alpha_hidden: float = 1.0
    """Weight of the hidden-state loss (0 turns it off and skips the projections' work)."""
    alpha_task: float = 1.0
    """Weight of the ground-truth loss (masked LM in pretraining, the task loss in fine-tuning)."""
    temperature: float = 1.0
    """Softmax temperature of the classic KL logit loss (the loss is multiplied by T²)."""

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ElasticLMError(f"distill.kind={self.kind!r} must be one of {', '.join(KINDS)}")
        for name in ("alpha_logit", "alpha_attn", "alpha_hidden", "alpha_task"):
            if getattr(self, name) < 0:
                raise ElasticLMError(f"distill.{name}={getattr(self, name)!r} must be >= 0")
        if self.temperature <= 0:
            raise ElasticLMError(f"distill.temperature={self.temperature!r} must be > 0")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ElasticLMError(f"loss kind must be one of {', '.join(KINDS)}, got {kind!r}")


def _zero(s: torch.Tensor) -> torch.Tensor:
    return s.float().sum() * 0.0  # no real rows: 0, still part of the student's graph


def pearson_distance(s: torch.Tensor, t: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """1 − ρ(s_row, t_row) along the last dimension: ...×D -> ... (float32).

    A constant row has no direction: ρ is taken as 0 against it (distance 1), and identical rows
    give ~0."""
    s, t = s.float(), t.float()
    s = s - s.mean(-1, keepdim=True)
    t = t - t.mean(-1, keepdim=True)
    num = (s * t).sum(-1)
    den = torch.sqrt((s * s).sum(-1) * (t * t).sum(-1) + eps)
    return 1.0 - num / den


def _rows(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """B×N×D with a B×N mask -> R×D of the real rows (R×D stays as is)."""
    if mask is None or x.dim() == 2:
        return x.reshape(-1, x.shape[-1])
    return x[mask.bool()]


def logit_loss(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None, *, kind: str = "relational",
               temperature: float = 1.0) -> torch.Tensor:
    """Logit distillation. s, t: R×C or B×N×V (with `mask` B×N selecting rows). One output (C == 1,
    regression) -> MSE; else relational mean(1 − ρ) or classic KL(t ‖ s) at temperature T × T²."""
    _check_kind(kind)
    s_rows, t_rows = _rows(s, mask), _rows(t, mask)  # R×C
    if s_rows.shape[0] == 0:
        return _zero(s)
    if s_rows.shape[-1] == 1:
        return F.mse_loss(s_rows.float(), t_rows.float())
    if kind == "relational":
        return pearson_distance(s_rows, t_rows).mean()
    T = temperature
    return F.kl_div(F.log_softmax(s_rows.float() / T, -1), F.softmax(t_rows.float() / T, -1),
                    reduction="batchmean") * T * T


def hidden_loss(s_proj: torch.Tensor, t: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                kind: str = "relational") -> torch.Tensor:
    """Hidden-state distillation over the real tokens. s_proj, t: B×N×d_t (student already projected)."""
    _check_kind(kind)
    s_rows, t_rows = _rows(s_proj, attention_mask), _rows(t, attention_mask)  # R×d_t
    if s_rows.shape[0] == 0:
        return _zero(s_proj)
    if kind == "relational":
        return pearson_distance(s_rows, t_rows).mean()
    return F.mse_loss(s_rows.float(), t_rows.float())


def attention_loss(s_probs: torch.Tensor, t_probs: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                   kind: str = "relational", eps: float = 1e-12) -> torch.Tensor:
    """Attention distillation. s_probs: B×Hs×N×N, t_probs: B×Ht×N×N (rows = queries, columns = keys).

    Only real query rows count, and each row is compared over the real keys only (padded key columns
    are left out of the means and variances, not merely zero). Different head counts: both maps are
    averaged over heads first (B×1×N×N)."""
    _check_kind(kind)
    s, t = s_probs.float(), t_probs.float()
    if s.shape[1] != t.shape[1]:
        s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
    B, H, N, _ = s.shape
    if attention_mask is None:
        attention_mask = torch.ones(B, N, device=s.device)
    real = attention_mask.to(s.dtype)  # B×N
    keys = real[:, None, None, :]  # B×1×1×N
    queries = real[:, None, :].expand(B, H, N)  # B×H×N
    n_rows = queries.sum()
    if n_rows == 0:
        return _zero(s_probs)
    if kind == "classic":
        entries = keys * queries[..., None]  # B×H×N×N: real query × real key
        return ((s - t) ** 2 * entries).sum() / entries.sum()
    # Pearson over the real keys: centre each row on its real keys' mean, zero the padded keys
    padded = not bool((real == 1).all())
    n = real.sum(-1).clamp(min=1)[:, None, None, None] if padded else float(N)  # B×1×1×1
    s_c = s - (s * keys if padded else s).sum(-1, keepdim=True) / n
    t_c = t - (t * keys if padded else t).sum(-1, keepdim=True) / n
    if padded:
        s_c, t_c = s_c * keys, t_c * keys
    cov = torch.linalg.vecdot(s_c, t_c)  # B×H×N
    den = torch.sqrt(torch.linalg.vecdot(s_c, s_c) * torch.linalg.vecdot(t_c, t_c) + eps)
    dist = 1.0 - cov / den  # B×H×N
    return (dist * queries).sum() / n_rows


class HiddenProjection(nn.Module):
    """One learned Linear(d, d_t) per student layer, mapping student block outputs to the teacher's
    width for the hidden loss. Kept in the trainer's checkpoint, never in an extracted model."""

    def __init__(self, num_layers: int, hidden_size: int, teacher_hidden_size: int, std: float = 0.02,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(hidden_size, teacher_hidden_size) for _ in range(num_layers))
        with torch.no_grad():
            for lin in self.layers:
                lin.weight.normal_(0.0, std, generator=generator)
                lin.bias.zero_()

    def forward(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        return self.layers[layer](h)  # B×N×d -> B×N×d_t


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer: round(l · L_t / L), halves rounded up."""
    from elasticlm.distill.teachers import teacher_layer

    return [teacher_layer(l, student_layers, teacher_layers) for l in range(1, student_layers + 1)]


def weighted_total(losses: dict[str, torch.Tensor], cfg: DistillConfig) -> torch.Tensor:
    """Σ alpha_k · loss_k over the losses present ("logit", "attn", "hidden", "task")."""
    weights = {"logit": cfg.alpha_logit, "attn": cfg.alpha_attn, "hidden": cfg.alpha_hidden, "task": cfg.alpha_task}
    unknown = set(losses) - set(weights)
    if unknown:
        raise ElasticLMError(f"unknown loss name(s) {sorted(unknown)}; expected {sorted(weights)}")
    return sum(weights[k] * v for k, v in losses.items())

"""Distillation losses as plain functions (no trainer state).

Relational losses (the default) compare the *shape* of each row rather than its values. For a teacher
row t and a student row s (a logit vector, one token's hidden state, one query's attention over the
keys) the loss is 1 − ρ(t, s), ρ the Pearson correlation along the row, averaged over the real rows.
A student row that is a positive scale and shift of the teacher's costs nothing, so a small block is
free to keep its own scale and offset while it learns the teacher's relations.

    logit_loss      logit rows (vocabulary at masked positions for MLM; classes for a task);
                    one output (regression) -> MSE whatever the kind
    hidden_loss     per token, the student's block output projected by a learned Linear(d, d_t)
                    (`HiddenProjection`), compared over the d_t features
    attention_loss  attention-probability rows over the real keys only, real query rows only;
                    head-averaged maps (B×1×N×N) when the head counts differ

Classic losses (the ablation): KL(teacher ‖ student) at temperature T on logits, multiplied by T²
(torch's ``kl_div(..., reduction="batchmean") · T²`` on the real rows); MSE on the projected hidden
states (real tokens) and on attention probabilities (real query × real key entries). A probability
MSE is some 250× smaller than 1 − ρ on the same maps (each row's entries are ~1/N), which would leave
the classic ablation with practically no attention distillation; the trainer therefore multiplies it
by a weight calibrated on the first batch (`attention_scale`: relational / classic on that batch,
kept in the checkpoints), so both kinds start with attention terms of the same size. On a two-class
task the logit term is the same KL in both kinds (see `logit_loss`).

Conventions shared by every loss:

* masks (`mask`, `attention_mask`) are 1/True for real tokens, shaped like the rows (B×N); padded rows
  and padded keys never count, whatever values they hold (as long as they are finite);
* everything is computed in float32 (bf16 inputs are upcast; autocast is switched off inside);
* the reductions are masked means, so nothing synchronises with the device, and a mask with no real
  row gives a 0 that is still connected to the student's graph;
* ρ uses ``eps``: ρ = cov / sqrt(max(var_s·var_t, eps²)) (unnormalised variances), exact unless
  both rows are (nearly) constant; a constant row gives distance 1 and a finite gradient instead of a
  division by zero.

Teacher layer for student layer l (1-based) of L, teacher with L_t layers: round(l·L_t / L), halves up
(`layer_map`). The caller averages the per-layer attention / hidden losses over the student's layers.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from elasticlm.distill.projection import PROJECTIONS, HiddenProjection, supernet_projection  # noqa: F401 (re-exported)
from elasticlm.errors import ElasticLMError

__all__ = ["KINDS", "PROJECTIONS", "DistillConfig", "HiddenProjection", "attention_loss", "attention_losses",
           "attention_scale", "hidden_loss", "layer_map", "logit_loss", "pearson_distance", "supernet_projection",
           "weighted_total"]

KINDS = ("relational", "classic")
LOSS_NAMES = ("logit", "attn", "hidden", "task")


@dataclass
class DistillConfig:
    """Which distillation losses are used, and how they are weighted into the total."""

    kind: str = "relational"
    """"relational" (1 − Pearson ρ per row) or "classic" (KL with temperature + MSE; the ablation)."""
    alpha_logit: float = 1.0
    """Weight of the logit loss (0 turns it off; a teacher without a matching head has none)."""
    alpha_attn: float = 1.0
    """Weight of the attention-probability loss (0 turns it off and skips the captures)."""
    alpha_hidden: float = 1.0
    """Weight of the hidden-state loss (0 turns it off and skips the projections' work)."""
    alpha_task: float = 1.0
    """Weight of the ground-truth loss (masked LM in pretraining, the task loss in fine-tuning)."""
    temperature: float = 1.0
    """Softmax temperature of the classic KL logit loss (which is multiplied by T²); unused by relational."""
    classic_attn_scale: float | None = None
    """Weight multiplying the classic attention MSE; None = calibrated on the first batch so that it starts
    the size of the relational attention term (kept in the checkpoints); unused by relational."""
    projection: str = "block"
    """Hidden-state projections of supernet training: "block" (one per candidate block, (layer, kind,
    sharing)) or "layer" (one per layer, shared by its candidates); retraining one path has one per layer."""

    def validate(self) -> None:
        """Raise `ElasticLMError` naming the first bad field."""
        if self.kind not in KINDS:
            raise ElasticLMError(f"distill.kind={self.kind!r} must be one of {', '.join(KINDS)}")
        for name in ("alpha_logit", "alpha_attn", "alpha_hidden", "alpha_task"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ElasticLMError(f"distill.{name}={value!r} must be a finite number >= 0")
        t = self.temperature
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t <= 0:
            raise ElasticLMError(f"distill.temperature={t!r} must be a finite number > 0")
        c = self.classic_attn_scale
        if c is not None and (not isinstance(c, (int, float)) or isinstance(c, bool) or not math.isfinite(c) or c <= 0):
            raise ElasticLMError(f"distill.classic_attn_scale={c!r} must be a finite number > 0 (or null: calibrated)")
        if self.projection not in PROJECTIONS:
            raise ElasticLMError(f"distill.projection={self.projection!r} must be one of {', '.join(PROJECTIONS)}")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ElasticLMError(f"distillation loss kind {kind!r} must be one of {', '.join(KINDS)}")


def _check_shapes(what: str, s: torch.Tensor, t: torch.Tensor) -> None:
    if s.shape != t.shape:
        raise ElasticLMError(f"{what}: student shape {tuple(s.shape)} differs from teacher shape {tuple(t.shape)}")


def _row_mask(what: str, mask: torch.Tensor | None, row_shape: torch.Size) -> torch.Tensor | None:
    """The mask as bool, shaped like the rows (`row_shape`), or None for "every row is real"."""
    if mask is None:
        return None
    if mask.shape != row_shape:
        raise ElasticLMError(f"{what}: mask shape {tuple(mask.shape)} does not match the rows {tuple(row_shape)}")
    return mask.bool()


def _masked_mean(values: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` over the entries where `real` (broadcast) is True; 0 (with a graph) if none."""
    if real is None:
        return values.mean() if values.numel() else values.sum() * 0.0
    real = real.expand_as(values)
    total = torch.where(real, values, 0.0).sum()  # padded entries: value and gradient ignored
    return total / real.sum().clamp(min=1)


def _fp32(x: torch.Tensor):
    """A context with autocast off on `x`'s device, so matmuls and reductions stay in float32."""
    dev = x.device.type
    try:
        on = torch.is_autocast_enabled(dev)
    except (RuntimeError, TypeError):  # device types autocast does not know
        on = False
    return torch.autocast(dev, enabled=False) if on else nullcontext()


def _centered_distance(s_c: torch.Tensor, t_c: torch.Tensor, eps: float) -> torch.Tensor:
    """1 − ρ from rows already centred (and zeroed where they do not count): ...×D -> ..."""
    cov = torch.linalg.vecdot(s_c, t_c)
    var = torch.linalg.vecdot(s_c, s_c) * torch.linalg.vecdot(t_c, t_c)
    return 1.0 - cov / torch.sqrt(var.clamp(min=eps * eps))  # clamp before the root: finite gradients


@dataclass
class _TeacherRows:
    """A teacher's rows prepared once for `_pearson_to_teacher`, shared by every student layer
    mapped to the same teacher layer."""

    t_c: torch.Tensor
    """...×D: the rows centred over the entries that count, zero at the others."""
    t_var: torch.Tensor
    """...: their sums of squares."""


class _PearsonToTeacher(torch.autograd.Function):
    """1 − ρ(s_row, t_row) with the teacher side fixed (no gradient), as one autograd node.

    The gradient is written out, ∂(1 − ρ)/∂s = −t_c/D + (ρ/var_s)·s_c (D = sqrt(var_s·var_t); the
    second term is 0 where D is clamped at eps), which needs no centring pass of its own because
    s_c and t_c are already centred (and zero at the keys that do not count). Autograd through the
    plain formula builds a full-size temporary for every product, mean and subtraction and again for
    their gradients; on B×H×N×N attention maps that was most of the loss's cost."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, t_c: torch.Tensor, t_var: torch.Tensor, keys: torch.Tensor | None,
                key_w: torch.Tensor | None, n_keys: torch.Tensor | None, eps: float) -> torch.Tensor:
        s_c = _centre(s, keys, key_w, n_keys)  # ...×D
        cov = torch.linalg.vecdot(s_c, t_c)  # ...
        s_var = torch.linalg.vecdot(s_c, s_c)
        prod = s_var * t_var
        denom = torch.sqrt(prod.clamp(min=eps * eps))
        rho = cov / denom
        ctx.save_for_backward(s_c, t_c, rho, denom, s_var, prod > eps * eps)
        return 1.0 - rho

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        s_c, t_c, rho, denom, s_var, free = ctx.saved_tensors
        a = (-g / denom).unsqueeze(-1)
        b = torch.where(free, g * rho / s_var.clamp(min=torch.finfo(s_var.dtype).tiny), 0.0).unsqueeze(-1)
        return torch.addcmul(s_c * b, t_c, a), None, None, None, None, None, None


def _teacher_rows(t: torch.Tensor, keys: torch.Tensor | None, key_w: torch.Tensor | None,
                  n_keys: torch.Tensor | None) -> _TeacherRows:
    """Centre the teacher's rows over the keys that count (all when `keys` is None)."""
    with torch.no_grad():
        t = t.float()
        t_c = _centre(t, keys, key_w, n_keys)
        return _TeacherRows(t_c, torch.linalg.vecdot(t_c, t_c))


def _centre(x: torch.Tensor, keys: torch.Tensor | None, key_w: torch.Tensor | None,
            n_keys: torch.Tensor | None) -> torch.Tensor:
    """x minus its row mean over the keys that count, zero at the others (all count when keys is None)."""
    if keys is None:
        return x - x.mean(-1, keepdim=True)
    return torch.where(keys, x - torch.matmul(x, key_w) / n_keys, 0.0)  # masked row sums as one matmul pass


def _pearson_to_teacher(s: torch.Tensor, rows: _TeacherRows, keys: torch.Tensor | None = None,
                        key_w: torch.Tensor | None = None, n_keys: torch.Tensor | None = None,
                        eps: float = 1e-8) -> torch.Tensor:
    """1 − ρ per row between student rows `s` (float32) and prepared teacher rows: ...×D -> ..."""
    return _PearsonToTeacher.apply(s, rows.t_c, rows.t_var, keys, key_w, n_keys, eps)


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def pearson_distance(s: torch.Tensor, t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1 − ρ(s_row, t_row) along the last dimension, in float32: ...×D, ...×D -> ...

    ρ = cov / sqrt(max(var_s·var_t, eps²)) with var the sums of squared deviations: a constant row
    gives ρ = 0 (distance 1, finite gradient);
    identical non-constant rows give ~0; a positive scale and shift of either row changes nothing."""
    _check_shapes("pearson_distance", s, t)
    with _fp32(s):
        s, t = s.float(), t.float()
        if not t.requires_grad:  # the usual case (a teacher): one node with a written-out gradient
            return _pearson_to_teacher(s, _teacher_rows(t, None, None, None), eps=eps)
        return _centered_distance(s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True), eps)


def logit_loss(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None, *, kind: str = "relational",
               temperature: float = 1.0) -> torch.Tensor:
    """Logit distillation, averaged over the real rows.

    s, t: R×C (rows already picked, e.g. the masked positions' vocabulary logits, or a task's class
    logits) or B×N×V with `mask` B×N (1/True = a row that counts, e.g. ``labels != -100``). Every row
    is computed and the padded ones are masked out of the mean, so with a sparse mask over a large
    vocabulary it is cheaper to pass the gathered rows R×V. One output (C == 1, regression) or 1-D
    inputs -> MSE whatever the kind; else relational mean(1 − ρ) or classic KL(t ‖ s) at temperature
    T, times T² (torch's ``kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean") · T²``).
    Two classes: the Pearson correlation of two-element rows is always ±1 and has no gradient, so
    binary tasks use the KL form whatever the kind (the only way a binary teacher's confidence
    reaches the student)."""
    _check_kind(kind)
    _check_shapes("logit_loss", s, t)
    if s.dim() == 1:  # R regression outputs
        s, t = s[:, None], t[:, None]
    real = _row_mask("logit_loss", mask, s.shape[:-1])  # B×N (or R)
    with _fp32(s):
        s32, t32 = s.float(), t.float()
        if s.shape[-1] == 1:
            per_row = (s32 - t32).squeeze(-1) ** 2  # regression: MSE
        elif kind == "relational" and s.shape[-1] > 2:
            per_row = pearson_distance(s32, t32)
        else:
            if not temperature > 0:
                raise ElasticLMError(f"distillation temperature={temperature!r} must be > 0")
            T = float(temperature)
            log_p_s = F.log_softmax(s32 / T, -1)
            log_p_t = F.log_softmax(t32 / T, -1)
            per_row = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1) * (T * T)
        return _masked_mean(per_row, real)


def hidden_loss(s_proj: torch.Tensor, t: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                kind: str = "relational") -> torch.Tensor:
    """Hidden-state distillation for one student layer over the real tokens.

    s_proj, t: B×N×d_t (the student's block output already projected to the teacher's width, see
    `HiddenProjection`); attention_mask B×N, 1 = real token. Relational: mean over real tokens of
    1 − ρ over the d_t features; classic: MSE over the real tokens' features."""
    _check_kind(kind)
    _check_shapes("hidden_loss", s_proj, t)
    real = _row_mask("hidden_loss", attention_mask, s_proj.shape[:-1])  # B×N
    with _fp32(s_proj):
        s32, t32 = s_proj.float(), t.float()
        if kind == "relational":
            per_token = pearson_distance(s32, t32)  # B×N
        else:
            per_token = (s32 - t32).pow(2).mean(-1)  # B×N
        return _masked_mean(per_token, real)


def attention_loss(s_probs: torch.Tensor, t_probs: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                   kind: str = "relational", eps: float = 1e-8) -> torch.Tensor:
    """Attention distillation for one student layer.

    s_probs: B×Hs×N×N, t_probs: B×Ht×N×N attention probabilities (rows = queries, columns = keys);
    attention_mask B×N, 1 = real token. Only real query rows count, and each row is compared over
    the real keys only: padded key columns are left out of the row's means and variances (not merely
    zeroed). Different head counts: both maps are averaged over heads first (B×1×N×N). Relational:
    mean over rows of 1 − ρ; classic: MSE over the real query × real key entries. A row with a
    single real key is constant (distance 1, no gradient)."""
    return attention_losses([s_probs], [t_probs], [1], attention_mask, kind=kind, eps=eps)


def attention_losses(s_maps: list[torch.Tensor], t_maps: list[torch.Tensor], lmap: list[int],
                     attention_mask: torch.Tensor | None = None, *, kind: str = "relational",
                     eps: float = 1e-8) -> torch.Tensor:
    """`attention_loss` averaged over the student's layers: student map l against teacher map
    lmap[l] − 1 (`layer_map`, 1-based). The same value as the mean of the per-layer calls, but each
    teacher map's rows are centred once however many student layers map to it."""
    _check_kind(kind)
    if len(s_maps) != len(lmap) or not s_maps:
        raise ElasticLMError(f"attention_losses: {len(s_maps)} student maps but {len(lmap)} layer-map entries")
    prepared: dict[tuple[int, bool], _TeacherRows] = {}
    total = None
    for l, s_probs in enumerate(s_maps):
        ti = lmap[l] - 1
        t_probs = t_maps[ti]
        if s_probs.dim() != 4 or t_probs.dim() != 4 or s_probs.shape[0] != t_probs.shape[0] \
                or s_probs.shape[2:] != t_probs.shape[2:]:
            raise ElasticLMError(f"attention_loss: maps must be B×H×N×N with matching B and N, got student "
                                 f"{tuple(s_probs.shape)} and teacher {tuple(t_probs.shape)}")
        B, _, N, M = s_probs.shape
        real = _row_mask("attention_loss", attention_mask, torch.Size((B, M)))  # B×N
        averaged = s_probs.shape[1] != t_probs.shape[1]

        def teacher_map() -> torch.Tensor:  # float32, head-averaged when the head counts differ
            t = t_probs.float()
            return t.mean(1, keepdim=True) if averaged else t  # B×1×N×N or B×H×N×N

        with _fp32(s_probs):
            s = s_probs.float()
            if averaged:
                s = s.mean(1, keepdim=True)  # B×1×N×N
            if kind == "classic":
                loss = _classic_attention(s, teacher_map(), real)
            else:
                keys = key_w = n_keys = queries = None
                if real is not None:
                    keys = real[:, None, None, :]  # B×1×1×N
                    queries = real[:, None, :]  # B×1×N, broadcast over heads
                    n_keys = real.sum(-1).clamp(min=1).to(s.dtype)[:, None, None, None]  # B×1×1×1
                    key_w = real.to(s.dtype)[:, None, :, None]  # B×1×N×1
                if t_probs.requires_grad:  # a teacher map with a graph: plain autograd on both sides
                    per_row = _centered_distance(_centre(s, keys, key_w, n_keys),
                                                 _centre(teacher_map(), keys, key_w, n_keys), eps)
                else:  # the teacher map is cast, averaged and centred once, for its first student layer
                    rows = prepared.get((ti, averaged))
                    if rows is None:
                        rows = prepared[(ti, averaged)] = _teacher_rows(teacher_map(), keys, key_w, n_keys)
                    per_row = _pearson_to_teacher(s, rows, keys, key_w, n_keys, eps)  # B×H×N
                loss = per_row.mean() if real is None else _masked_mean(per_row, queries)
        total = loss if total is None else total + loss
    return total / len(s_maps)


def attention_scale(s_maps: list[torch.Tensor], t_maps: list[torch.Tensor], lmap: list[int],
                    attention_mask: torch.Tensor | None = None) -> float:
    """The weight that brings the classic attention MSE to the size of the relational term on these
    maps (as `attention_losses` takes them): relational / classic; 1.0 when either is 0."""
    with torch.no_grad():
        rel = float(attention_losses(s_maps, t_maps, lmap, attention_mask, kind="relational"))
        cls = float(attention_losses(s_maps, t_maps, lmap, attention_mask, kind="classic"))
    return rel / cls if rel > 0 and cls > 0 and math.isfinite(rel / cls) else 1.0


def _classic_attention(s: torch.Tensor, t: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """MSE over the real query × real key entries (all entries without a mask)."""
    if real is None:
        return F.mse_loss(s, t)
    keys, queries = real[:, None, None, :], real[:, None, :]
    d = torch.where(keys, s - t, 0.0)  # B×H×N×N, padded keys zero
    per_row = torch.linalg.vecdot(d, d)  # B×H×N
    n_keys = real.sum(-1).to(s.dtype)[:, None, None]  # B×1×1
    total = torch.where(queries, per_row, 0.0).sum()
    return total / (queries.expand_as(per_row) * n_keys).sum().clamp(min=1)


# --------------------------------------------------------------------------------------------------
# Layer map, total (the hidden projections: `elasticlm.distill.projection`)
# --------------------------------------------------------------------------------------------------


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based) for each student layer l = 1..L: round(l · L_t / L), halves rounded up."""
    from elasticlm.distill.teachers import teacher_layer

    if student_layers < 1 or teacher_layers < 1:
        raise ElasticLMError(f"layer_map needs >= 1 layers, got student {student_layers}, teacher {teacher_layers}")
    return [teacher_layer(l, student_layers, teacher_layers) for l in range(1, student_layers + 1)]


def weighted_total(losses: dict[str, torch.Tensor], cfg: DistillConfig) -> torch.Tensor:
    """Σ alpha_k · loss_k over the losses present (keys among "logit", "attn", "hidden", "task");
    an absent key simply does not contribute."""
    weights = {"logit": cfg.alpha_logit, "attn": cfg.alpha_attn, "hidden": cfg.alpha_hidden, "task": cfg.alpha_task}
    unknown = sorted(set(losses) - set(weights))
    if unknown:
        raise ElasticLMError(f"unknown loss name(s) {unknown}; expected some of {', '.join(LOSS_NAMES)}")
    if not losses:
        raise ElasticLMError("weighted_total got no losses")
    terms = [weights[k] * v.float() for k, v in losses.items()]
    return sum(terms[1:], terms[0])

"""The distillation objectives of supernet training and retraining, for `elasticlm.train.engine.fit`.

    Distiller     what every objective shares: the student captures the `alpha_* > 0` losses need,
                  the teacher's forward with just those outputs, the attention and hidden losses,
                  and the weighted total (`DistillConfig`'s alphas)
    MLMDistill    stage 1: masked LM on a corpus + distillation from an encoder teacher
                  (attention rows, hidden states through the sampled blocks' own projections, MLM
                  logits when the teacher has an MLM head)
    TaskDistill   stage 2: a task's first 90% with its fine-tuned task teacher (task loss + logit,
                  attention and hidden losses); several tasks take turns, one task per step. QA
                  tasks train on windowed features: the kind's span loss and the start/end
                  logits distilled over each window's real positions (`kinds.SpanQA`)

Retraining's objective (`elasticlm.train.retrain.RetrainTask`) uses the same `Distiller`. A new
distillation loss is a field of `DistillConfig` plus a term in `Distiller.representation`.

The classic (ablation) attention MSE is weighted by `Distiller.attn_scale`, calibrated on the first
batch a distiller sees (rank 0's, broadcast) unless `classic_attn_scale` fixes it; the objectives
hand it to the engine's checkpoints (`state()` / `restore()`) so a resumed run keeps the same weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from elasticlm.distill.losses import (DistillConfig, HiddenProjection, attention_losses, attention_scale, hidden_loss,
                                      layer_map, logit_loss, weighted_total)
from elasticlm.kinds import kind_of
from elasticlm.models import Capture, SuperNet
from elasticlm.space import Architecture
from elasticlm.data.batching import pad_batch, row_lengths, rows_of
from elasticlm.runtime import Dist
from elasticlm.train.engine import step_rows
from elasticlm.train.supernet import FinetuneConfig, PretrainConfig, hash_seed, sample_path


class Distiller:
    """Distillation from a teacher as `cfg` weighs it: student layer l learns from teacher layer
    `lmap[l]`, hidden states through `proj` (None when `cfg.alpha_hidden` is 0; per block, the
    sampled block's own projection)."""

    def __init__(self, cfg: DistillConfig, proj: HiddenProjection | None, lmap: list[int], dist: Dist | None = None):
        self.cfg, self.proj, self.lmap, self.dist = cfg, proj, lmap, dist or Dist()
        self.attn_scale: float | None = cfg.classic_attn_scale
        """The classic attention MSE's weight; None until calibrated on the first batch."""

    @property
    def wants_attentions(self) -> bool:
        return self.cfg.alpha_attn > 0

    @property
    def wants_hidden(self) -> bool:
        return self.cfg.alpha_hidden > 0

    @property
    def wants_teacher(self) -> bool:
        """Whether a teacher forward is needed beyond logits (attention rows or hidden states)."""
        return self.wants_attentions or self.wants_hidden

    def capture(self) -> Capture:
        """What a supernet forward keeps for the representation losses."""
        return Capture(attn_probs=self.wants_attentions, block_output=self.wants_hidden)

    def teacher(self, teacher, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor):
        """The teacher's forward with the outputs the losses use (logits always)."""
        return teacher(ids, mask, types, want_attentions=self.wants_attentions, want_hidden=self.wants_hidden)

    def representation(self, out, t_out, mask: torch.Tensor, arch: Architecture | None = None) -> dict[str, torch.Tensor]:
        """Attention and hidden losses averaged over the student's layers (teacher layer lmap[l]); `arch`
        (the path that ran) picks the per-block projections."""
        if self.cfg.kind == "classic" and self.wants_attentions and self.attn_scale is None:
            self.calibrate(out, t_out, mask)
        return representation_losses(out, t_out, mask, self.proj, self.lmap, self.cfg, arch=arch,
                                     attn_scale=self.attn_scale or 1.0)

    def calibrate(self, out, t_out, mask: torch.Tensor) -> float:
        """Set `attn_scale` so that the classic attention term equals the relational one on this batch
        (rank 0's batch when distributed, so every rank uses one weight)."""
        L = len(self.lmap)
        real = None if mask is None or bool(mask.all()) else mask
        scale = attention_scale(out.attentions[:L], t_out.attentions, self.lmap, real)
        self.attn_scale = float(self.dist.broadcast_object(scale))
        return self.attn_scale

    def state(self) -> dict:
        return {} if self.attn_scale is None else {"attn_scale": self.attn_scale}

    def restore(self, saved: dict) -> None:
        if self.cfg.classic_attn_scale is None and saved.get("attn_scale") is not None:
            self.attn_scale = float(saved["attn_scale"])

    def total(self, losses: dict[str, torch.Tensor], *, task: str = "task") -> dict[str, torch.Tensor]:
        """{"loss": Σ alpha_k · loss_k, **losses}; the loss named `task` is weighted by alpha_task."""
        parts = losses if task == "task" else {("task" if k == task else k): v for k, v in losses.items()}
        return {"loss": weighted_total(parts, self.cfg), **losses}


def representation_losses(out, t_out, mask: torch.Tensor, proj: HiddenProjection, lmap: list[int],
                          cfg: DistillConfig, *, arch: Architecture | None = None,
                          attn_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Attention and hidden losses averaged over the student's layers (teacher layer lmap[l]); the
    classic attention MSE times `attn_scale`. Per-block projections need `arch`, the path that ran."""
    losses = {}
    L = len(lmap)
    if mask is not None and bool(mask.all()):
        mask = None  # packed corpus blocks have no padding: the losses' unmasked path, same value, less work
    if cfg.alpha_attn > 0:
        attn = attention_losses(out.attentions[:L], t_out.attentions, lmap, mask, kind=cfg.kind)
        losses["attn"] = attn * attn_scale if cfg.kind == "classic" else attn
    if cfg.alpha_hidden > 0:
        blocks = [None] * L if arch is None else [(c.kind, c.sharing) for c in arch.layers]
        losses["hidden"] = sum(hidden_loss(proj(l, out.hidden_states[l + 1], blocks[l]), t_out.hidden_states[lmap[l]],
                                           mask, kind=cfg.kind) for l in range(L)) / L
    return losses


class MLMDistill:
    """Stage-1 objective: MLM on packed corpus blocks, distilled from an encoder teacher."""

    def __init__(self, supernet: SuperNet, proj: HiddenProjection, teacher, blocks, collator_factory,
                 cfg: PretrainConfig, dist: Dist, arch: Architecture | None = None):
        self.supernet, self.proj, self.teacher, self.blocks = supernet, proj, teacher, blocks
        self.arch = arch
        """A fixed path (retraining one architecture), else one sampled per step."""
        self.collator_factory, self.cfg, self.dist = collator_factory, cfg, dist
        self.modules = {"supernet": supernet, "projection": proj}
        self.lmap = layer_map(supernet.space.num_layers, teacher.num_layers)
        self.distiller = Distiller(cfg.distill, proj, self.lmap, dist)
        self.use_logits = teacher.has_lm_head and cfg.distill.alpha_logit > 0

    def state(self) -> dict:
        """What a checkpoint keeps beside the weights (the calibrated classic attention weight)."""
        return self.distiller.state()

    def restore(self, saved: dict) -> None:
        self.distiller.restore(saved)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """This rank's rows, each masked by its own generator seeded by (seed, step, row): the
        masks do not depend on how the batch is split over ranks or micro-batches."""
        rows = step_rows(len(self.blocks), self.cfg.train, step, micro, self.dist)
        masked = [self.collator_factory(torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, step, i)))(
            [self.blocks[i]]) for i in rows]
        return {k: torch.cat([m[k] for m in masked]) for k in masked[0]}

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        net, cfg, kd = self.supernet, self.cfg.distill, self.distiller
        arch = self.arch or sample_path(net.space, net.widths(), self.cfg.train.seed, step, self.cfg.paths)
        ids, mask, types, labels = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["labels"]
        out = net(ids, arch, attention_mask=mask, token_type_ids=types, capture=kd.capture())
        t_out = kd.teacher(self.teacher, ids, mask, types)
        picked = labels != -100  # B×N
        n_masked = int(picked.sum())
        logits = net.mlm_logits(out.last_hidden_state[picked])  # R×V
        losses = {"mlm": self.dist.global_mean(F.cross_entropy(logits.float(), labels[picked]) if n_masked
                                               else logits.sum() * 0.0, n_masked)}
        if self.use_logits:
            losses["logit"] = self.dist.global_mean(
                logit_loss(logits, t_out.logits[picked], kind=cfg.kind, temperature=cfg.temperature), n_masked)
        losses.update(kd.representation(out, t_out, mask, arch))
        return kd.total(losses, task="mlm")


@dataclass
class TaskData:
    """One task as stage 2 trains on it."""

    name: str
    spec: Any
    train: Any
    """Encoded first 90% of the training split (QA: the windowed features of its first 90% of examples)."""
    teacher: Any
    """The fine-tuned task teacher (`Teacher` with a task head)."""
    pad_id: int


class TaskDistill:
    """Stage-2 objective: task loss + distillation from each task's teacher; tasks take turns."""

    def __init__(self, supernet: SuperNet, proj: HiddenProjection, tasks: list[TaskData], cfg: FinetuneConfig,
                 dist: Dist):
        self.supernet, self.proj, self.tasks, self.cfg, self.dist = supernet, proj, tasks, cfg, dist
        self.modules = {"supernet": supernet, "projection": proj}
        self.lmaps = {t.name: layer_map(supernet.space.num_layers, t.teacher.num_layers) for t in tasks}
        self.distillers = {t.name: Distiller(cfg.distill, proj, self.lmaps[t.name], dist) for t in tasks}

    def state(self) -> dict:
        """What a checkpoint keeps beside the weights (each task's calibrated classic attention weight)."""
        scales = {name: kd.state()["attn_scale"] for name, kd in self.distillers.items() if kd.state()}
        return {"attn_scales": scales} if scales else {}

    def restore(self, saved: dict) -> None:
        for name, scale in saved.get("attn_scales", {}).items():
            if name in self.distillers:
                self.distillers[name].restore({"attn_scale": scale})

    def task_of(self, step: int) -> tuple[TaskData, int]:
        """The task of step `step` and how many steps of that task came before."""
        return self.tasks[step % len(self.tasks)], step // len(self.tasks)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        task, k = self.task_of(step)
        lengths = row_lengths(task.train) if self.cfg.train.group_by_length else None
        rows = step_rows(len(task.train), self.cfg.train, k, micro, self.dist, lengths=lengths)
        return pad_batch(rows_of(task.train, rows), task.pad_id)

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        net, cfg = self.supernet, self.cfg.distill
        task, _ = self.task_of(step)
        kd = self.distillers[task.name]
        arch = sample_path(net.space, net.widths(), self.cfg.train.seed, step, self.cfg.paths)
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        out = net(ids, arch, attention_mask=mask, token_type_ids=types, capture=kd.capture())
        t_out = kd.teacher(task.teacher, ids, mask, types)
        logits = net.task_logits(task.name, out.last_hidden_state, mask)  # B×C, or B×N×2 (qa)
        kind = kind_of(task.spec)
        losses = {"task": kind.loss(logits, batch)}
        if cfg.alpha_logit > 0:
            losses["logit"] = kind.distill_loss(logits, t_out.logits, mask, cfg)
        losses.update(kd.representation(out, t_out, mask, arch))
        return kd.total(losses)

"""Supernet training: what both stages share — configs, the sampled path, the distillation
objectives, and the supernet folder format.

Single-path one-shot: every optimizer step samples one block per layer (uniformly, or uniformly
among the paths within a parameter range) from `random.Random(f"{seed}:{step}")`, so every rank and
every resumed run trains the same path at the same step. Only that path runs and gets gradients.

    MLMDistill    stage 1: masked LM on a corpus + distillation from an encoder teacher
                  (attention rows, hidden states through per-layer projections, MLM logits when
                  the teacher has an MLM head)
    TaskDistill   stage 2: a task's first 90% with its fine-tuned task teacher (task loss + logit,
                  attention and hidden losses); several tasks take turns, one task per step. QA
                  tasks train on windowed features: the kind's span loss and the start/end
                  logits distilled over each window's real positions (`kinds.SpanQA`)

A supernet folder holds `supernet.safetensors` (weights at their current FFN widths, task heads
included) and `config.json` (space, widths, task heads, the resolved training config).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from elasticlm.data.cache import atomic_file
from elasticlm.distill.losses import (DistillConfig, HiddenProjection, attention_losses, hidden_loss, layer_map,
                                      logit_loss, weighted_total)
from elasticlm.errors import ElasticLMError
from elasticlm.models import Capture, SuperNet, SupernetConfig
from elasticlm.space import Architecture, SearchSpace
from elasticlm.kinds import kind_named, kind_of
from elasticlm.train.engine import Dist, TrainConfig, pad_batch, rows_of, step_rows

# --------------------------------------------------------------------------------------------------
# Configs (one dataclass tree; `elasticlm run` reuses them)
# --------------------------------------------------------------------------------------------------


@dataclass
class GrowthConfig:
    """PCA-guided FFN growth during pretraining."""

    mode: str = "dynamic"
    """"dynamic": FFNs start at d/4 and grow; "fixed": every FFN at d, no growth (ablation)."""
    every: int | None = None
    """Steps between growth rounds; None = once per epoch over the corpus."""
    k: int | None = None
    """Blocks grown per round; None = round(0.29 · 6L) (21 of 72 at L=12)."""
    tau: float = 0.99
    """Share of the activation variance the counted principal components must explain."""
    score: str = "ratio"
    """"ratio": k/f (share of its width a block uses) or "count": k."""
    probe_blocks: int = 32
    """Held-out corpus blocks the PCA probe runs on (fixed for the whole run)."""

    def validate(self) -> None:
        checks = [("mode", self.mode in ("dynamic", "fixed"), "must be dynamic or fixed"),
                  ("every", self.every is None or self.every > 0, "must be > 0"),
                  ("k", self.k is None or self.k > 0, "must be > 0"),
                  ("tau", 0 < self.tau <= 1, "must be in (0, 1]"),
                  ("score", self.score in ("ratio", "count"), "must be ratio or count"),
                  ("probe_blocks", self.probe_blocks > 0, "must be > 0")]
        for name, ok, why in checks:
            if not ok:
                raise ElasticLMError(f"growth.{name}={getattr(self, name)!r} {why}")


@dataclass
class PathRange:
    """Which paths a step may sample: all (the default), or only those within a parameter range."""

    min_params: int | None = None
    """Smallest total parameter count (embeddings + blocks) of a sampled path."""
    max_params: int | None = None
    """Largest total parameter count of a sampled path."""


@dataclass
class PretrainConfig:
    """Stage 1: supernet pretraining (masked LM + distillation + growth)."""

    preset: str = "demo"
    """Search space preset (demo, micro, tiny, small)."""
    space: dict = field(default_factory=dict)
    """Search-space fields overriding the preset's (e.g. {"num_layers": 6}); empty = the preset as is."""
    corpus: str = "demo"
    """Text corpus: `demo`, a .txt file, a folder of them, or a `datasets` name."""
    teacher: str = "all-minilm-l6-v2"
    """Encoder teacher (an offline alias, a hub id or a folder); its tokenizer is the student's."""
    max_length: int = 128
    """Tokens per packed corpus block."""
    mlm_probability: float = 0.15
    """Share of tokens selected for masking (80% [MASK], 10% random, 10% kept)."""
    max_blocks: int | None = None
    """Train on the first N corpus blocks only (quick runs and tests)."""
    paths: PathRange = field(default_factory=PathRange)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4, batch_size=32))
    distill: DistillConfig = field(default_factory=DistillConfig)
    growth: GrowthConfig = field(default_factory=GrowthConfig)


@dataclass
class FinetuneConfig:
    """Stage 2: supernet fine-tuning on tasks' first 90% with their task teachers."""

    tasks: list[str] = field(default_factory=lambda: ["rt-polarity"])
    """Task names or dataset folders; one head each, one task per step (taking turns)."""
    teacher: str = "all-minilm-l6-v2"
    """Base teacher; its task-fine-tuned copy (cached, fine-tuned first when missing) is distilled."""
    teacher_epochs: float = 1.0
    """Epochs of task-teacher fine-tuning when it is not cached yet."""
    data_dir: str | None = None
    """Where GLUE TSVs / SQuAD JSON are (None: built-in sources)."""
    max_length: int | None = None
    """Tokens per example; None = the task teacher's (64 single sentences, 128 pairs)."""
    max_train_examples: int | None = None
    """Use only the first N examples of each task's 90% split (quick runs and tests)."""
    eval_paths: int = 5
    """Random paths scored on the held-out 10% and dev at the end (inherited weights)."""
    max_eval_examples: int | None = None
    """Score only the first N rows of each evaluation split."""
    paths: PathRange = field(default_factory=PathRange)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=4e-4, batch_size=32, epochs=1.0))
    distill: DistillConfig = field(default_factory=DistillConfig)


# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------


def resolve_space(preset: str, overrides: dict) -> SearchSpace:
    """The preset's space with `overrides` applied (unknown fields are a one-line error)."""
    from elasticlm.space import get_preset

    return SearchSpace.from_dict({**get_preset(preset).space.to_dict(), **overrides})


def sample_path(space: SearchSpace, widths: dict, seed: int, step: int, paths: PathRange,
                max_tries: int = 1000) -> Architecture:
    """The path of step `step`: uniform over the supernet's blocks at their current widths, or
    uniform over the paths within `paths`' parameter range. Same on every rank and on resume."""
    rng = random.Random(f"{seed}:{step}")
    if paths.min_params is None and paths.max_params is None:
        return space.sample(rng, widths)
    for _ in range(max_tries):
        arch = (space.sample_within(rng, paths.max_params, widths=widths) if paths.max_params is not None
                else space.sample(rng, widths))
        if paths.min_params is None or space.count_params(arch).total >= paths.min_params:
            return arch
    raise ElasticLMError(f"no path with at least {paths.min_params:,} parameters found in {max_tries} draws "
                         f"(max_params {paths.max_params}); widen the range (paths.min_params / paths.max_params)")


def check_range(space: SearchSpace, widths: dict, paths: PathRange) -> None:
    """Fail early, in one line, when no path fits the range."""
    lo, hi = paths.min_params, paths.max_params
    if lo is not None and hi is not None and lo > hi:
        raise ElasticLMError(f"paths.min_params {lo:,} is above paths.max_params {hi:,}")
    try:
        sample_path(space, widths, 0, 0, paths, max_tries=200)
    except ValueError as err:
        raise ElasticLMError(f"no supernet path fits the parameter range [{lo}, {hi}]: {err}") from None


# --------------------------------------------------------------------------------------------------
# Shared distillation of the representation (attention rows + hidden states)
# --------------------------------------------------------------------------------------------------


def representation_losses(out, t_out, mask: torch.Tensor, proj: HiddenProjection, lmap: list[int],
                          cfg: DistillConfig) -> dict[str, torch.Tensor]:
    """Attention and hidden losses averaged over the student's layers (teacher layer lmap[l])."""
    losses = {}
    L = len(lmap)
    if mask is not None and bool(mask.all()):
        mask = None  # packed corpus blocks have no padding: the losses' unmasked path, same value, less work
    if cfg.alpha_attn > 0:
        losses["attn"] = attention_losses(out.attentions[:L], t_out.attentions, lmap, mask, kind=cfg.kind)
    if cfg.alpha_hidden > 0:
        losses["hidden"] = sum(hidden_loss(proj(l, out.hidden_states[l + 1]), t_out.hidden_states[lmap[l]], mask,
                                           kind=cfg.kind) for l in range(L)) / L
    return losses


def _capture(cfg: DistillConfig) -> Capture:
    return Capture(attn_probs=cfg.alpha_attn > 0, block_output=cfg.alpha_hidden > 0)


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
        self.use_logits = teacher.has_lm_head and cfg.distill.alpha_logit > 0

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """This rank's rows, each masked by its own generator seeded by (seed, step, row): the
        masks do not depend on how the batch is split over ranks or micro-batches."""
        rows = step_rows(len(self.blocks), self.cfg.train, step, micro, self.dist)
        masked = [self.collator_factory(torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, step, i)))(
            [self.blocks[i]]) for i in rows]
        return {k: torch.cat([m[k] for m in masked]) for k in masked[0]}

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        net, cfg = self.supernet, self.cfg.distill
        arch = self.arch or sample_path(net.space, net.widths(), self.cfg.train.seed, step, self.cfg.paths)
        ids, mask, types, labels = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["labels"]
        out = net(ids, arch, attention_mask=mask, token_type_ids=types, capture=_capture(cfg))
        t_out = self.teacher(ids, mask, types, want_attentions=cfg.alpha_attn > 0, want_hidden=cfg.alpha_hidden > 0)
        picked = labels != -100  # B×N
        n_masked = int(picked.sum())
        logits = net.mlm_logits(out.last_hidden_state[picked])  # R×V
        losses = {"mlm": self.dist.global_mean(F.cross_entropy(logits.float(), labels[picked]) if n_masked
                                               else logits.sum() * 0.0, n_masked)}
        if self.use_logits:
            losses["logit"] = self.dist.global_mean(
                logit_loss(logits, t_out.logits[picked], kind=cfg.kind, temperature=cfg.temperature), n_masked)
        losses.update(representation_losses(out, t_out, mask, self.proj, self.lmap, cfg))
        parts = {("task" if k == "mlm" else k): v for k, v in losses.items()}
        return {"loss": weighted_total(parts, cfg), **losses}


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike `hash`)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


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

    def task_of(self, step: int) -> tuple[TaskData, int]:
        """The task of step `step` and how many steps of that task came before."""
        return self.tasks[step % len(self.tasks)], step // len(self.tasks)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        task, k = self.task_of(step)
        rows = step_rows(len(task.train), self.cfg.train, k, micro, self.dist)
        return pad_batch(rows_of(task.train, rows), task.pad_id)

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        net, cfg = self.supernet, self.cfg.distill
        task, _ = self.task_of(step)
        arch = sample_path(net.space, net.widths(), self.cfg.train.seed, step, self.cfg.paths)
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        out = net(ids, arch, attention_mask=mask, token_type_ids=types, capture=_capture(cfg))
        t_out = task.teacher(ids, mask, types, want_attentions=cfg.alpha_attn > 0, want_hidden=cfg.alpha_hidden > 0)
        logits = net.task_logits(task.name, out.last_hidden_state, mask)  # B×C, or B×N×2 (qa)
        kind = kind_of(task.spec)
        losses = {"task": kind.loss(logits, batch)}
        if cfg.alpha_logit > 0:
            losses["logit"] = kind.distill_loss(logits, t_out.logits, mask, cfg)
        losses.update(representation_losses(out, t_out, mask, self.proj, self.lmaps[task.name], cfg))
        return {"loss": weighted_total(losses, cfg), **losses}


# --------------------------------------------------------------------------------------------------
# The supernet folder
# --------------------------------------------------------------------------------------------------


def widths_to_json(widths: dict) -> dict[str, int]:
    return {f"{l}/{kind}/{sharing}": w for (l, kind, sharing), w in widths.items()}


def widths_from_json(data: dict[str, int]) -> dict:
    out = {}
    for key, w in data.items():
        l, kind, sharing = key.split("/")
        out[(int(l), kind, sharing)] = int(w)
    return out


def build_supernet(space: SearchSpace, *, fixed: bool, seed: int, task_heads: dict | None = None) -> SuperNet:
    """A fresh supernet whose initial weights depend only on `seed` (global RNG state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SuperNet(SupernetConfig(space, initial_ffn=space.hidden_size if fixed else None))
    gen = torch.Generator().manual_seed(seed + 1)
    for task, spec in (task_heads or {}).items():
        net.add_task_head(task, kind_named(spec["kind"]), spec["num_labels"], generator=gen,
                          pooling=spec.get("pooling", "mean"))
    return net


def save_supernet(net: SuperNet, out: Path, info: dict[str, Any]) -> None:
    """`supernet.safetensors` + `config.json` (space, widths, task heads, `info`), atomically."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "supernet.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    config = {"space": net.space.to_dict(), "widths": widths_to_json(net.widths()),
              "mean_ffn_width": net.mean_ffn_width(), "task_heads": net.task_head_specs(), **info}
    with atomic_file(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def load_supernet(folder: str | Path) -> tuple[SuperNet, dict[str, Any]]:
    """The supernet saved in `folder` (grown widths and task heads restored) and its config.json."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "supernet.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ElasticLMError(f"{folder} holds no trained supernet (supernet.safetensors + config.json); "
                             f"run `elasticlm supernet pretrain --out {folder}` first")
    config = json.loads((folder / "config.json").read_text())
    space = SearchSpace.from_dict(config["space"])
    net = SuperNet(SupernetConfig(space))
    for task, spec in config.get("task_heads", {}).items():
        net.add_task_head(task, kind_named(spec["kind"]), spec["num_labels"], pooling=spec.get("pooling", "mean"))
    net.load_state_dict(load_file(str(folder / "supernet.safetensors")))
    return net, config

"""Supernet training: what both stages share — configs and the sampled path (the supernet folder
format is `elasticlm.models.folder`, the objectives are `elasticlm.train.objectives`).

Single-path one-shot: every optimizer step samples one block per layer (uniformly, or uniformly
among the paths within a parameter range) from `random.Random(f"{seed}:{step}")`, so every rank and
every resumed run trains the same path at the same step. Only that path runs and gets gradients.

"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from elasticlm.distill.losses import DistillConfig
from elasticlm.errors import ElasticLMError
from elasticlm.models import SuperNet, SupernetConfig
from elasticlm.space import Architecture, SearchSpace
from elasticlm.kinds import kind_named
from elasticlm.train.engine import TrainConfig

# --------------------------------------------------------------------------------------------------
# Configs (one dataclass tree; `elasticlm run` reuses them)
# --------------------------------------------------------------------------------------------------


@dataclass
class GrowthConfig:
    """PCA-guided FFN growth during pretraining."""

    mode: str = "dynamic"
    """"dynamic": FFNs start at d/4 and grow; "fixed": every FFN at d, no growth (ablation)."""
    every: int | None = None
    """Steps between growth rounds; None = derived from the steps: enough rounds of K for the mean FFN width
    to reach d, spread over the first (1 − settle) of pretraining (`analysis.pca.growth_schedule`)."""
    k: int | None = None
    """Blocks grown per round; None = round(0.29 · 6L) (21 of 72 at L=12), raised when the rounds that fit
    (a given `every`, or fewer steps than rounds) would not bring the mean FFN width to d."""
    settle: float = 0.2
    """Share of pretraining steps left after the last growth round when `every` or `k` is derived."""
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
                  ("settle", 0 <= self.settle < 1, "must be in [0, 1)"),
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
    embedding_init: str = "teacher"
    """The supernet's token embedding: "teacher" (the teacher's, projected onto its top-e principal
    components, `elasticlm.distill.init`) or "random" (N(0, 0.02), learned from scratch)."""
    embedding_std: float = 0.05
    """Standard deviation the teacher-initialised embedding is scaled to."""
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
    augment: int = 0
    """Teacher-labelled copies of each training example with words swapped for neighbours in the teacher's
    embedding space (as retraining's `augment`), added for classification tasks: distillation only, no
    task loss; `train.epochs` counts passes over the enlarged set. 0: none."""
    augment_p: float = 0.4
    """Probability that a word of an augmented copy is swapped."""
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


def check_space(preset: str, overrides: dict) -> None:
    """`resolve_space`'s checks as a one-line error naming `pretrain.space`."""
    try:
        resolve_space(preset, overrides)
    except (ElasticLMError, TypeError, ValueError) as err:
        raise ElasticLMError(f"pretrain.space: {err}") from None


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


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike `hash`)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


# --------------------------------------------------------------------------------------------------
# A fresh supernet
# --------------------------------------------------------------------------------------------------


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

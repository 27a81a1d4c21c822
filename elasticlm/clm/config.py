"""The causal pipeline's configuration (`ClmConfig`, one `TrainConfig` per stage) and the architecture
it trains: the decoder's space, the given or sampled architecture, and the uniform baseline beside it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from elasticlm.errors import ElasticLMError
from elasticlm.space import Architecture, SearchSpace
from elasticlm.train.engine import TrainConfig

PIPELINE_WIDE = ("precision", "seed", "progress")
"""`TrainConfig` fields every stage takes from the `ClmConfig` fields of the same name (not set per stage)."""


def stage_train(**changes) -> TrainConfig:
    """A causal stage's training defaults (`TrainConfig` with 100 steps of 8 sequences, lr 5e-4, weight
    decay 0.1), with `changes` made."""
    return replace(TrainConfig(max_steps=100, batch_size=8, lr=5e-4, weight_decay=0.1), **changes)


@dataclass
class ClmConfig:
    """Everything the causal pipeline's stages read."""

    preset: str = "demo"
    """Search space whose dimensions the decoder takes (hidden size, heads, embedding size)."""
    arch: str | None = None
    """arch.json of the architecture (a file, or a run folder holding arch.json); None: a seeded
    sample within the preset's parameter ceiling."""
    teacher: str = "smollm2-135m-instruct"
    """Causal teacher (offline alias, hub id or folder); its tokenizer becomes the student's."""
    corpus: str = "demo"
    """Pretraining text: demo, a .txt file, a folder of them, or a datasets name."""
    instructions: str = "sharegpt"
    """Instruction pairs: sharegpt, dolly (datasets), a Dolly-format .jsonl file or folder."""
    context: int = 256
    """The decoder's positions (max_position_embeddings)."""
    block_size: int = 128
    """Tokens per pretraining block."""
    max_blocks: int | None = 20000
    """Pretraining blocks taken from the corpus (None: all)."""
    max_pairs: int = 4000
    """Instruction pairs read from the source (before the length filter)."""
    max_prompt: int = 112
    """Longest prompt kept, in tokens (chat template included)."""
    max_response: int = 64
    """Response tokens kept for SFT (longer ones are cut)."""
    ascii_share: float = 0.95
    """Drop pairs whose text is less ASCII than this (keeps mostly English text); 0 keeps all."""
    pretrain: TrainConfig = field(default_factory=lambda: stage_train(max_steps=600, lr=2e-3))
    """Pretraining (`max_steps` steps; precision, seed and progress: the fields below)."""
    embedding_init: str = "teacher"
    """"teacher": the token embedding starts as the teacher's projected onto its top principal
    components (`elasticlm.distill.init`; a lower loss from the first steps); "random": normal init."""
    kd_weight: float = 0.0
    """Weight of the teacher-logit KL in pretraining (0: next-token loss only)."""
    kd_hidden_weight: float = 0.0
    """Weight of the teacher hidden-state loss in pretraining (1 − Pearson ρ per token between each
    student layer's output, projected by a learned Linear(d, d_t), and its mapped teacher layer);
    0: none."""
    sft: TrainConfig = field(default_factory=lambda: stage_train(max_steps=120))
    """Supervised fine-tuning (as `pretrain`)."""
    distill: TrainConfig = field(default_factory=lambda: stage_train(max_steps=30, batch_size=4, lr=1e-4))
    """MiniLLM distillation from the SFT model (as `pretrain`)."""
    mix: float = 0.2
    """Teacher share of the sampling distribution."""
    lm_weight: float = 1.0
    """Weight of the next-token loss on pretraining blocks during distillation."""
    sample_tokens: int = 32
    """Most response tokens sampled per distillation prompt."""
    eval_prompts: int = 32
    """Held-out instructions scored by Rouge-L."""
    eval_tokens: int = 48
    """Most tokens generated per evaluation prompt (greedy)."""
    precision: str = "auto"
    """auto, bf16 or fp32 (see TrainConfig.precision): every stage's training, the teacher and evaluation."""
    seed: int = 0
    """Seeds initialisation, data order, sampling and the default architecture (every stage's `seed`)."""
    progress: bool = True
    """Progress lines while training (every stage's)."""

    def validate(self) -> None:
        checks = [("mix", 0 <= self.mix <= 1, "must be in [0, 1]"), ("context", self.context >= 16, "must be >= 16"),
                  ("block_size", 8 <= self.block_size <= self.context, "must be in [8, context]"),
                  ("max_prompt", 0 < self.max_prompt < self.context, "must be in (0, context)"),
                  ("eval_prompts", self.eval_prompts > 0, "must be > 0"),
                  ("kd_weight", 0 <= self.kd_weight <= 1, "must be in [0, 1]"),
                  ("kd_hidden_weight", self.kd_hidden_weight >= 0, "must be >= 0")]
        for name, ok, why in checks:
            if not ok:
                raise ElasticLMError(f"clm config: {name}={getattr(self, name)!r} {why}")
        default = TrainConfig()
        for stage in ("pretrain", "sft", "distill"):
            train = getattr(self, stage)
            train.validate(f"clm config, {stage}")
            if train.max_steps is None:
                raise ElasticLMError(f"clm config: {stage}.max_steps is not set; give the stage's optimizer steps")
            for name in PIPELINE_WIDE:
                if getattr(train, name) != getattr(default, name):
                    raise ElasticLMError(f"clm config: {stage}.{name} is set; set {name} (all stages) instead")
        if self.max_prompt + max(self.max_response, self.sample_tokens, self.eval_tokens) > self.context:
            raise ElasticLMError(f"clm config: max_prompt {self.max_prompt} + response tokens exceed the context "
                                 f"{self.context}; raise context or lower max_prompt")

    def train_config(self, stage: TrainConfig) -> TrainConfig:
        """The stage's `TrainConfig` with the pipeline-wide fields (`PIPELINE_WIDE`) filled in."""
        return replace(stage, **{name: getattr(self, name) for name in PIPELINE_WIDE},
                       device="cpu" if not torch.cuda.is_available() else stage.device)


# ------------------------------------------------------------------------------------------------
# Architecture
# ------------------------------------------------------------------------------------------------


def decoder_space(cfg: ClmConfig, vocab_size: int) -> SearchSpace:
    from elasticlm.space import get_preset

    return replace(get_preset(cfg.preset).space, vocab_size=vocab_size, max_position_embeddings=cfg.context)


def resolve_arch(cfg: ClmConfig) -> Architecture:
    """The architecture of `cfg.arch`, or a seeded sample within the preset's ceiling."""
    from elasticlm.space import get_preset

    space = get_preset(cfg.preset).space
    if cfg.arch:
        path = Path(cfg.arch)
        path = path / "arch.json" if path.is_dir() else path
        if not path.is_file():
            raise ElasticLMError(f"{cfg.arch}: no arch.json there; give an arch.json file or a folder holding one")
        from elasticlm.data.textfile import read_text

        return space.arch_from_json(read_text(path))
    return space.sample_within(random.Random(cfg.seed), space.param_ceiling)


def uniform_like(space: SearchSpace, arch: Architecture) -> Architecture:
    """The uniform no-sharing architecture (one of the space's block kinds, one FFN width) with the most
    parameters not above `arch`'s (the closest one when none is below)."""
    target = space.count_params(arch).total
    options = [space.uniform(k, "none", f) for k in space.kinds for f in space.ffn_grid]
    below = [a for a in options if space.count_params(a).total <= target]
    if below:
        return max(below, key=lambda a: space.count_params(a).total)
    return min(options, key=lambda a: abs(space.count_params(a).total - target))

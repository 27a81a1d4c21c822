"""Training defaults per preset: the paper's settings for the paper-scale presets, and for `demo`
what finishes in a few minutes per stage on 2 CPU cores (bf16) and still learns the task."""

from __future__ import annotations

from elasticlm.space import get_preset
from elasticlm.train.engine import TrainConfig
from elasticlm.train.supernet import FinetuneConfig, GrowthConfig, PretrainConfig


def pretrain_config(preset: str) -> PretrainConfig:
    """Stage-1 defaults for `preset` (paper: batch 256, lr 1e-4, 10 epochs, growth once per epoch)."""
    get_preset(preset)  # a one-line error for an unknown preset
    if preset == "demo":
        # ~1M tokens: 240 steps of 32 × 128, a growth round every 50 steps (4 rounds)
        return PretrainConfig(preset=preset, train=TrainConfig(lr=5e-4, batch_size=32, max_steps=240,
                                                               checkpoint_every=60, log_every=10),
                              growth=GrowthConfig(every=50))
    return PretrainConfig(preset=preset, train=TrainConfig(lr=1e-4, batch_size=256, epochs=10.0,
                                                           checkpoint_every=1000, log_every=50))


def finetune_config(preset: str) -> FinetuneConfig:
    """Stage-2 defaults (paper: lr 4e-4, 10 epochs; demo: 3 epochs of rt-polarity's 90%)."""
    get_preset(preset)
    if preset == "demo":
        return FinetuneConfig(train=TrainConfig(lr=4e-4, batch_size=32, epochs=3.0, checkpoint_every=200, log_every=10))
    return FinetuneConfig(train=TrainConfig(lr=4e-4, batch_size=32, epochs=10.0, checkpoint_every=1000,
                                            log_every=50))

"""Every preset's whole configuration, one `RunConfig` tree per preset, made by one function each.

    get_config("demo")   the tree `elasticlm run --preset demo` runs; every command that takes `--preset`
                         (supernet pretrain/finetune, ablate, ...) takes its stage defaults from the same tree
    to_yaml("demo")      that tree as `configs/demo.yaml` (generated: `elasticlm config dump --preset demo`)

The search spaces themselves stay in `elasticlm.space.PRESETS` (torch-free); the paper-scale presets
share the paper's training settings, `demo` is what finishes in a few minutes per stage on 2 CPU cores.
"""

from __future__ import annotations

from typing import Callable

from elasticlm.experiment.run import RunConfig
from elasticlm.search.evolution import EvolutionConfig
from elasticlm.search.search_stages import SearchConfig
from elasticlm.space import get_preset
from elasticlm.train.engine import TrainConfig
from elasticlm.train.retrain import RetrainConfig
from elasticlm.train.supernet import FinetuneConfig, PretrainConfig


def demo() -> RunConfig:
    """The embedded default: d=192, L=4, rt-polarity, the whole pipeline in ~20 min on 2 CPU cores."""
    return RunConfig(
        preset="demo",
        # 0.66M tokens: 160 steps of 32 × 128 (uniform-bert is pretrained as long along its own path, and
        # both fit the 20-minute budget; at 1M tokens held-out masked-token accuracy stays at the unigram
        # level too, README "Measured"); growth derived from the steps: 11 rounds of 7 blocks, every 11
        # steps, take the mean FFN width from d/4 to d by step 121
        pretrain=PretrainConfig(train=TrainConfig(lr=5e-4, batch_size=32, max_steps=160,
                                                  checkpoint_every=40, log_every=10)),
        # 2 epochs of rt-polarity's first 90% (476 steps); at least 450 steps on a smaller task (a user's
        # 2,880 Amazon sentences got 162 and left every path at the majority class, README "Measured")
        finetune=FinetuneConfig(train=TrainConfig(lr=4e-4, batch_size=32, epochs=2.0, min_steps=450,
                                                  checkpoint_every=200, log_every=10)),
        search=SearchConfig(evolution=EvolutionConfig(population=16, generations=6, parents=5)),
        # at this scale the task teacher carries most of the transfer: each sentence is also seen in 2
        # teacher-labelled word-swapped copies, for 1 epoch over the 3x data (the cost of 3 plain epochs)
        # the 4 models two at a time, one thread each (their steps are too small to keep 2 cores busy), in
        # batches of like length; README "Measured": 2 epochs, twice the lr or grouping change nothing
        # beyond the seed noise, grouping saves a fifth of the time
        # (788 steps on rt-polarity; at least 750 on a smaller task)
        retrain=RetrainConfig(augment=2, workers=2,
                              train=TrainConfig(lr=1e-4, batch_size=32, epochs=1.0, min_steps=750, checkpoint_every=500,
                                                log_every=20, group_by_length=True)),
    )


def _paper(preset: str) -> RunConfig:
    """The paper's training settings on the search space `preset`."""
    return RunConfig(
        preset=preset,
        # batch 256, lr 1e-4, 10 epochs; growth rounds spread over the first 80% of the steps until the mean
        # FFN width reaches d (K = 21 of 72 blocks, 11 rounds at L=12)
        pretrain=PretrainConfig(train=TrainConfig(lr=1e-4, batch_size=256, epochs=10.0,
                                                                 checkpoint_every=1000, log_every=50)),
        # batch 256 with the paper's lr 4e-4 for it (only the final model's fine-tuning runs at 32)
        finetune=FinetuneConfig(train=TrainConfig(lr=4e-4, batch_size=256, epochs=10.0, checkpoint_every=1000,
                                                  log_every=50)),
        # the final model is pretrained with distillation, then fine-tuned (lr 5e-5, 10 epochs)
        retrain=RetrainConfig(seeds=[0, 1, 2], pretrain_steps=10000, pretrain_lr=1e-4, pretrain_batch_size=256,
                              train=TrainConfig(lr=5e-5, batch_size=32, epochs=10.0, checkpoint_every=1000,
                                                log_every=50)),
    )


def micro() -> RunConfig:
    """ELM-Micro: d=192, L=6, 5M parameters, the paper's training settings."""
    return _paper("micro")


def tiny() -> RunConfig:
    """ELM-Tiny: d=528, L=12, 10M parameters, the paper's training settings."""
    return _paper("tiny")


def small() -> RunConfig:
    """ELM-Small: d=528, L=12, 15.7M parameters, the paper's training settings."""
    return _paper("small")


CONFIGS: dict[str, Callable[[], RunConfig]] = {"demo": demo, "micro": micro, "tiny": tiny, "small": small}


def get_config(preset: str) -> RunConfig:
    """The whole configuration of `preset` (a fresh tree: change it freely)."""
    get_preset(preset)  # a one-line error naming the presets for an unknown one
    return CONFIGS[preset]()


def to_yaml(preset: str) -> str:
    """`get_config(preset)` as the text of `configs/<preset>.yaml`."""
    import yaml

    from elasticlm.config import to_dict

    head = (f"# elasticlm run configs/{preset}.yaml --out runs/{preset}\n# {CONFIGS[preset].__doc__}\n"
            f"# Generated by `elasticlm config dump --preset {preset}` from elasticlm/presets.py: every field\n"
            f"# of the run config at the preset's values. The top-level task/teacher/corpus/data_dir/seed are\n"
            f"# handed to every stage. Unknown keys are errors.\n")
    return head + yaml.safe_dump(to_dict(get_config(preset)), sort_keys=False, default_flow_style=None, width=110)

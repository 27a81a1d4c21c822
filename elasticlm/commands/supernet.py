"""`elasticlm supernet pretrain|finetune`: the two supernet-training stages.

Each command builds the stage's config (the preset's run tree of `elasticlm.presets`, then a YAML
`--config`, then the options, then `key=value` overrides), makes one call, and prints where the result is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticlm.commands.options import add_const, add_fields, build

PRETRAIN, FINETUNE = "elasticlm.train.supernet:PretrainConfig", "elasticlm.train.supernet:FinetuneConfig"
SUPERNET_EXAMPLES = """examples (each stage's --help has more):
  elasticlm supernet pretrain --preset demo --out runs/demo/supernet
  elasticlm supernet finetune --supernet runs/demo/supernet --task rt-polarity --out runs/demo/supernet-ft
"""

PRETRAIN_EXAMPLE = """example:
  elasticlm supernet pretrain --preset demo --out runs/demo/supernet
  elasticlm supernet pretrain --preset small --corpus ./wiki.txt --epochs 10 --out runs/small/supernet \\
      train.batch_size=256 growth.every=2000
  torchrun --nproc_per_node=2 -m elasticlm supernet pretrain --preset demo --out runs/ddp   # data-parallel
"""

FINETUNE_EXAMPLE = """example:
  elasticlm supernet finetune --preset demo --supernet runs/demo/supernet --task rt-polarity \\
      --out runs/demo/supernet-ft
  elasticlm supernet finetune --supernet runs/demo/supernet --task rt-polarity --task ./my-reviews \\
      --out runs/demo/multi    # one head per task, tasks take turns
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("supernet", help="train the weight-sharing supernet (stage 1 and 2)",
                              epilog=SUPERNET_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="supernet_command", metavar="STAGE")

    pre = sub.add_parser("pretrain", help="stage 1: masked LM + distillation + PCA-guided FFN growth",
                         epilog=PRETRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    pre.add_argument("--preset", default="demo", help="search space and training defaults (demo, micro, tiny, small)")
    add_fields(pre, PRETRAIN, ["corpus", "teacher", ("growth", "growth.mode"), ("grow-every", "growth.every"),
                               ("min-params", "paths.min_params"), ("max-params", "paths.max_params")])
    _common(pre, PRETRAIN)
    pre.set_defaults(func=_pretrain)

    ft = sub.add_parser("finetune", help="stage 2: fine-tune the supernet on tasks' first 90%% with task teachers",
                        epilog=FINETUNE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ft.add_argument("--preset", default="demo", help="training defaults (the space comes from --supernet)")
    ft.add_argument("--supernet", required=True, help="a pretrained supernet folder (elasticlm supernet pretrain --out)")
    ft.add_argument("--task", action="append", dest="tasks", help="task name or dataset folder (repeat for several)")
    add_fields(ft, FINETUNE, ["teacher", ("data-dir", "data_dir")])
    _common(ft, FINETUNE)
    ft.set_defaults(func=_finetune)


def _common(p: argparse.ArgumentParser, ref: str) -> None:
    p.add_argument("--out", required=True, help="output folder (rerun into it to resume)")
    p.add_argument("--config", help="YAML file with config fields (applied before the options)")
    add_fields(p, ref, ["train.epochs", "train.max_steps", "train.batch_size", "train.lr", "train.seed",
                        "train.checkpoint_every"])
    add_const(p, "--fp32", "train.precision", "fp32", "train in fp32 (default: bf16 where this machine runs it faster)")
    add_const(p, "--bf16", "train.precision", "bf16", "train under bf16 autocast even where it is not faster")
    add_const(p, "--no-progress", "train.progress", False, "no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any config field, e.g. train.grad_accum=2")


def _stage(args, stage: str):
    """The stage's config from the preset's run tree (what `elasticlm run --preset` gives the stage), then
    the YAML file, the options, and the key=value overrides."""
    from elasticlm.presets import get_config

    tasks = [("tasks", list(args.tasks))] if getattr(args, "tasks", None) else []
    return build(getattr(get_config(args.preset).resolved(), stage), args, first=tasks)


def _pretrain(args) -> int:
    from elasticlm.train.supernet_stages import pretrain

    cfg = _stage(args, "pretrain")
    result = pretrain(cfg, Path(args.out))
    print(f"supernet: {Path(args.out) / 'supernet.safetensors'} ({result['steps']} steps, "
          f"{result['growth_rounds']} growth rounds, mean FFN width {result['mean_ffn_width']:.0f})")
    return 0


def _finetune(args) -> int:
    from elasticlm.train.supernet_stages import finetune

    cfg = _stage(args, "finetune")
    result = finetune(cfg, Path(args.supernet), Path(args.out))
    for task, s in result["tasks"].items():
        shown = ", ".join(f"{split} {v['mean']:.4f} (majority {v['majority']:.4f})" for split, v in s["summary"].items())
        print(f"{task}: {s['metric']} of random paths with inherited weights: {shown}")
    print(f"fine-tuned supernet: {Path(args.out) / 'supernet.safetensors'}")
    return 0

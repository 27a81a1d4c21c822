"""`elasticlm supernet pretrain|finetune`: the two supernet-training stages.

Each command builds the stage's config (preset defaults, then a YAML `--config`, then the options,
then `key=value` overrides), makes one call, and prints where the result is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    pre.add_argument("--corpus", help="text corpus: demo, a .txt file, a folder of them, or a datasets name")
    pre.add_argument("--teacher", help="encoder teacher: offline alias, hub id or folder (default all-minilm-l6-v2)")
    pre.add_argument("--growth", choices=("dynamic", "fixed"), help="dynamic FFN growth (default) or fixed widths d")
    pre.add_argument("--grow-every", type=int, help="steps between growth rounds (default: once per epoch)")
    pre.add_argument("--min-params", type=float, help="sample only paths with at least this many parameters")
    pre.add_argument("--max-params", type=float, help="sample only paths with at most this many parameters")
    _common(pre)
    pre.set_defaults(func=_pretrain)

    ft = sub.add_parser("finetune", help="stage 2: fine-tune the supernet on tasks' first 90%% with task teachers",
                        epilog=FINETUNE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ft.add_argument("--preset", default="demo", help="training defaults (the space comes from --supernet)")
    ft.add_argument("--supernet", required=True, help="a pretrained supernet folder (elasticlm supernet pretrain --out)")
    ft.add_argument("--task", action="append", dest="tasks", help="task name or dataset folder (repeat for several)")
    ft.add_argument("--teacher", help="base teacher to fine-tune per task (default all-minilm-l6-v2)")
    ft.add_argument("--data-dir", help="folder with GLUE TSVs / SQuAD JSON")
    _common(ft)
    ft.set_defaults(func=_finetune)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (rerun into it to resume)")
    p.add_argument("--config", help="YAML file with config fields (applied before the options)")
    p.add_argument("--epochs", type=float, help="passes over the training data")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, help="global batch per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, help="seed of data order, masks, paths and initialisation")
    p.add_argument("--fp32", action="store_true", help="train in fp32 (default: bf16 where this machine runs it faster)")
    p.add_argument("--bf16", action="store_true", help="train under bf16 autocast even where it is not faster")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any config field, e.g. train.grad_accum=2")


def _build(cfg, args) -> object:
    """Apply the YAML file, then the options, then key=value overrides."""
    from elasticlm.config import apply_yaml, override

    if args.config:
        cfg = apply_yaml(cfg, args.config)
    sets = []
    for flag, key in (("epochs", "train.epochs"), ("max_steps", "train.max_steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed"), ("checkpoint_every", "train.checkpoint_every"),
                      ("corpus", "corpus"), ("teacher", "teacher"), ("growth", "growth.mode"),
                      ("grow_every", "growth.every"), ("min_params", "paths.min_params"),
                      ("max_params", "paths.max_params"), ("data_dir", "data_dir")):
        value = getattr(args, flag, None)
        if value is not None:
            if key.startswith("paths."):
                value = int(value)
            sets.append(f"{key}={value}")
    if args.fp32:
        sets.append("train.precision=fp32")
    if args.bf16:
        sets.append("train.precision=bf16")
    if args.no_progress:
        sets.append("train.progress=false")
    if getattr(args, "tasks", None):
        sets.append(f"tasks=[{', '.join(repr(t) for t in args.tasks)}]")
    return override(cfg, sets + list(args.overrides))


def _pretrain(args) -> int:
    from elasticlm.train.presets import pretrain_config
    from elasticlm.train.stages import pretrain

    cfg = _build(pretrain_config(args.preset), args)
    result = pretrain(cfg, Path(args.out))
    print(f"supernet: {Path(args.out) / 'supernet.safetensors'} ({result['steps']} steps, "
          f"{result['growth_rounds']} growth rounds, mean FFN width {result['mean_ffn_width']:.0f})")
    return 0


def _finetune(args) -> int:
    from elasticlm.train.presets import finetune_config
    from elasticlm.train.stages import finetune

    cfg = _build(finetune_config(args.preset), args)
    result = finetune(cfg, Path(args.supernet), Path(args.out))
    for task, s in result["tasks"].items():
        shown = ", ".join(f"{split} {v['mean']:.4f} (majority {v['majority']:.4f})" for split, v in s["summary"].items())
        print(f"{task}: {s['metric']} of random paths with inherited weights: {shown}")
    print(f"fine-tuned supernet: {Path(args.out) / 'supernet.safetensors'}")
    return 0

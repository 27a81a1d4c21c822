"""`elasticlm ablate`: the ablation grid (see `elasticlm.experiment.ablation`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticlm.commands.options import add_fields

EXAMPLE = """examples:
  elasticlm ablate --preset demo --seeds 0 1 --out runs/ablate
  elasticlm ablate --preset demo --variants full classic-kd --out runs/ablate retrain.train.epochs=2
  elasticlm ablate --preset demo --seeds 0 1 --rank-archs 8 --out runs/ablate   # + Kendall tau per variant
"""


def register(subparsers) -> None:
    a = subparsers.add_parser("ablate", help="the ablation grid (fixed widths, no head search, classic KD, no "
                              "weight sharing, per-layer projections), mean ± std over seeds", epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("config", nargs="?", help="YAML run config (applied over the preset)")
    a.add_argument("--preset", help="demo, micro, tiny or small")
    add_fields(a, "elasticlm.experiment.run:RunConfig", ["task"])
    a.add_argument("--variants", nargs="+", help="subset of: full fixed-dims no-head-search classic-kd no-sharing layer-projection")
    a.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per variant (default 0)")
    a.add_argument("--rank-archs", type=int, default=0, metavar="N",
                   help="also rank-check every variant's run with N architectures and record Kendall tau "
                        "(default 0: no)")
    a.add_argument("--out", required=True, help="output folder (one run folder per variant and seed)")
    a.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any run config field")
    a.set_defaults(func=_ablate)


def _ablate(args) -> int:
    from elasticlm.commands.run import build_config
    from elasticlm.experiment.ablation import ablate

    cfg = build_config(args)
    res = ablate(cfg, Path(args.out), variants=args.variants, seeds=args.seeds, rank_archs=args.rank_archs)
    print(f"ablation table: {Path(args.out) / 'ablation.json'}")
    for row in res["rows"]:
        print(f"  {row['variant']:16s} dev {row['dev_mean']:.4f} ± {row['dev_std']:.4f}   "
              f"test {row.get('test_mean', float('nan')):.4f} ± {row.get('test_std', float('nan')):.4f}  "
              f"({row['seeds']} seeds)"
              + "".join(f"  tau[{fit}] {t['mean']:.3f}" for fit, t in row.get("kendall_tau", {}).items()
                        if t["mean"] is not None))
    return 0

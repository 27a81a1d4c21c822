"""`elasticlm compare`: the found model against the equal-budget baselines (see `elasticlm.experiment.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """examples:
  elasticlm compare runs/demo                 # retrain (or reuse) found + baselines, write metrics.json, print the table
  elasticlm compare runs/demo --seeds 0 1 2   # three seeds each: mean ± std, and significance.json's paired intervals
"""


def register(subparsers) -> None:
    c = subparsers.add_parser("compare", help="retrain the found model and the equal-budget baselines of a run, "
                              "write metrics.json and print the table", epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run", help="a run folder of `elasticlm run` (search and heads done)")
    c.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="retraining seeds (default: the run's retrain.seeds); models already retrained are reused")
    c.set_defaults(func=_compare)


def _compare(args) -> int:
    from elasticlm.experiment.compare import compare, table

    print(table(compare(Path(args.run), seeds=args.seeds)))
    return 0

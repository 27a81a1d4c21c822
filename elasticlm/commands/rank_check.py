"""`elasticlm rank-check`: does the supernet rank architectures as retraining does? (see
`elasticlm.experiment.rank_check`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticlm.commands.options import add_fields, build

RANK_CHECK = "elasticlm.experiment.rank_check:RankCheckConfig"

EXAMPLE = """examples:
  elasticlm rank-check runs/demo                                 # 12 architectures, seeds 0 1 -> runs/demo/rank-check/
  elasticlm rank-check runs/demo --archs 20 --seeds 0 1 2 --out runs/demo/rank-20
  elasticlm rank-check runs/demo --workers 2                     # two models at a time (CPU)
Rerun the same command to resume: retrained models are reused; `elasticlm report runs/demo` draws the result.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("rank-check", help="score architectures with every supernet fitness, retrain them, "
                              "and write how well each fitness ranks them (Kendall τ with its interval)",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a run folder of `elasticlm run` (search done)")
    add_fields(p, RANK_CHECK, ["archs", "seeds", "seed", "resamples", "workers"])
    p.add_argument("--out", help="output folder (default: RUN/rank-check)")
    p.set_defaults(func=_rank_check)


def _rank_check(args) -> int:
    from elasticlm.experiment.rank_check import RankCheckConfig, rank_check

    res = rank_check(Path(args.run), build(RankCheckConfig(), args), args.out)
    print(f"{len(res['archs'])} architectures, {res['metric']} on {res['split']} (mean of seeds {res['seeds']}):")
    for name, r in res["fitnesses"].items():
        tau, (lo, hi) = r["kendall_tau"], r["ci95"]
        text = "undefined" if tau is None else f"{tau:+.3f}" + (f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None else "")
        mark = " (the run's fitness)" if name == res["fitness"] else ""
        print(f"  fitness {name:10s} Kendall τ {text}{mark}")
    return 0

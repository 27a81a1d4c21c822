"""`elasticlm bench`: the project's speed benchmarks in one run, each ratio beside its target."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  elasticlm bench --quick                          # every benchmark at small settings (minutes)
  elasticlm bench --json bench.json                # full settings, every number into bench.json
  elasticlm bench --only latency latency.subnets=40
  elasticlm bench --run runs/demo --compare-only   # found model vs BertModel of its budget and the baselines
options NAME.key=value set a benchmark's keyword options, e.g. train.teacher=./my-bert search.examples=500.
"""


def register(subparsers) -> None:
    from elasticlm.bench import BENCHMARKS

    names = ", ".join(f"{b.name} ({b.about})" for b in BENCHMARKS)
    p = subparsers.add_parser("bench", help="speed benchmarks: each ratio beside its target; latency vs BERT",
                              description=f"Benchmarks: {names}.", epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small settings (numbers are indicative only)")
    p.add_argument("--only", action="append", metavar="NAME", choices=[b.name for b in BENCHMARKS],
                   help="run only this benchmark (repeat for several)")
    p.add_argument("--json", metavar="FILE", help="write every number to FILE")
    p.add_argument("--run", metavar="RUN_DIR", help="also time RUN/models/found vs HF BertModel of the same "
                                                    "budget and the uniform baselines (batch 1 and 32, N=128)")
    p.add_argument("--compare-only", action="store_true", help="with --run: only that comparison, no benchmarks")
    p.add_argument("--device", help="where the --run comparison runs (default: the GPU when there is one)")
    p.add_argument("--threads", type=int, help="torch threads for every benchmark (default: as set; 1 times steadily "
                                               "on a machine shared with busy processes)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="what the --run comparison times: elapsed (default) or process CPU time")
    p.add_argument("options", nargs="*", metavar="NAME.KEY=VALUE", help="a benchmark's option, e.g. latency.subnets=5")
    p.set_defaults(func=_bench)


def _bench(args) -> int:
    from elasticlm.bench.runner import parse_options
    from elasticlm.errors import ElasticLMError
    from elasticlm.search.latency import num_threads

    if args.compare_only and not args.run:
        raise ElasticLMError("--compare-only needs --run RUN_DIR")
    options = parse_options(args.options)
    with num_threads(args.threads):
        return _run(args, options)


def _run(args, options) -> int:
    import json
    import time

    import torch

    from elasticlm.bench.runner import run_benchmarks
    from elasticlm.io import atomic_file
    from elasticlm.search.latency import machine_fingerprint

    t0 = time.perf_counter()
    report: dict = {"machine": machine_fingerprint("cuda" if torch.cuda.is_available() else "cpu"),
                    "quick": args.quick}
    if not args.compare_only:
        report.update(run_benchmarks(args.only, quick=args.quick, options=options, say=print))
    if args.run:
        from elasticlm.bench.models import compare_run, format_comparison

        print(f"== models of {args.run}")
        report["models"] = compare_run(args.run, device=args.device, repeats=5 if args.quick else 20,
                                     clock=args.clock, say=print)
        for line in format_comparison(report["models"]):
            print(line)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if "ratios" in report:
        print(f"{len(report['ratios'])} ratios, {report['missed']} missed their target"
              + (f", {report['errors']} benchmark(s) failed" if report["errors"] else "")
              + f"; {report['seconds']:.0f} s")
    if args.json:
        with atomic_file(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 2 if report.get("errors") else 0

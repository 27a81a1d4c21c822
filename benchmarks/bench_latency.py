"""Latency predictor error: per-block table sum vs measured standalone models (target median ≤ 10%).

    python benchmarks/bench_latency.py [--quick] [--preset demo] [--subnets 20] [--threads 1] [--clock cpu]

The code is `elasticlm.bench.latency`; `elasticlm bench` runs it with the project's other benchmarks.
"""

from __future__ import annotations

import argparse

from elasticlm.bench.latency import predictor_error


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer timed calls per entry and model")
    ap.add_argument("--preset", default="demo", help="space dimensions (demo, micro, tiny, small)")
    ap.add_argument("--subnets", type=int, default=20, help="random architectures to measure")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, help="timed calls per entry and model (default 30; --quick 10)")
    ap.add_argument("--threads", type=int, help="torch threads while timing (default: as set)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="elapsed time (default) or process CPU time (steady on a busy shared machine)")
    ap.add_argument("--cached", action="store_true", help="use the machine's cached table instead of measuring it now")
    args = ap.parse_args(argv)
    r = predictor_error(quick=args.quick, preset=args.preset, subnets=args.subnets, seed=args.seed,
                        seq_len=args.seq_len, repeats=args.repeats, threads=args.threads, fresh=not args.cached,
                        clock=args.clock)
    print(f"{r['name']}: {r['ratio']:.3f} (target ≤ {r['target']}) {'ok' if r['ok'] else 'MISSED'}; "
          f"max {r['max']:.3f}, median signed {r['median_signed']:+.3f}; {len(r['subnets'])} subnets of {r['preset']}, "
          f"batch {r['batch']}, N={r['seq_len']}, {r['threads']} threads, {r['clock']} clock on {r['device']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

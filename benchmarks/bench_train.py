"""Supernet-training speed: prints ratios measured in one run (the code is `elasticlm.bench.train`).

1. Supernet KD step vs the same step of the plain standalone student (target ≤ 1.15).
2. MFU of the supernet KD step over the bf16 matmul peak measured in this run (target ≥ 0.30).
3. Dynamic-width supernet vs fixed widths, wall time of the same steps (target < 0.9).

    python benchmarks/bench_train.py                # ELM-Small dims (d=528, L=12), B=32, N=128
    python benchmarks/bench_train.py --quick        # tiny settings: checks it runs
`elasticlm bench` runs it together with the project's other benchmarks.
"""

from __future__ import annotations

import argparse

from elasticlm.bench.train import train_speed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help="space dimensions (default small; --quick: demo)")
    p.add_argument("--batch", type=int, default=None, help="batch (default 32; --quick: 4)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 128; --quick: 32)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per side (default 5; --quick: 2)")
    p.add_argument("--steps", type=int, default=None, help="steps of the dynamic vs fixed comparison (default 40)")
    p.add_argument("--teacher", default="all-minilm-l6-v2")
    p.add_argument("--no-dynamic", action="store_true", help="skip the dynamic vs fixed comparison")
    p.add_argument("--quick", action="store_true", help="tiny settings: only checks the benchmark runs")
    args = p.parse_args(argv)
    results = train_speed(quick=args.quick, preset=args.preset, batch=args.batch, seq=args.seq, repeats=args.repeats,
                          steps=args.steps, teacher=args.teacher, dynamic=not args.no_dynamic)
    kd, mfu = results[0]["ratio"], results[1]["ratio"]
    dyn = results[2]["ratio"] if len(results) > 2 else None
    print(f"summary: KD supernet/standalone {kd:.3f} (<= 1.15 {'ok' if kd <= 1.15 else 'MISSED'}); "
          f"MFU {mfu:.3f} (>= 0.30 {'ok' if mfu >= 0.30 else 'MISSED'}); dynamic/fixed "
          + (f"{dyn:.3f} (< 0.9 {'ok' if dyn < 0.9 else 'MISSED'})" if dyn is not None else "skipped"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

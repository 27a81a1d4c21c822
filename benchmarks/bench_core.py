"""Model speed: prints ratios measured in one run (the code is `elasticlm.bench.core`).

1. Supernet forward+backward along a sampled path vs the extracted standalone model (target ≤ 1.10).
2. Standalone inference vs transformers' `BertModel` of the same dimensions, batch 1 and 32, fp32 and
   bf16 (target ≤ 1.05 for the worst case).

    python benchmarks/bench_core.py                 # ELM-Small dimensions (d=528, L=12)
    python benchmarks/bench_core.py --preset micro  # smaller
    python benchmarks/bench_core.py --quick         # a few repeats, tiny batch: checks it runs
`elasticlm bench` runs it together with the project's other benchmarks (`--only core`).
"""

from __future__ import annotations

import argparse

from elasticlm.bench.core import core_speed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=None, help="space dimensions (default small; --quick: demo)")
    p.add_argument("--batch", type=int, default=None, help="training batch of the path comparison (default 16)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 128)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per side (default 10)")
    p.add_argument("--fp32", action="store_true", help="train comparison in fp32 instead of bf16 autocast")
    p.add_argument("--quick", action="store_true", help="tiny settings: only checks the benchmark runs")
    args = p.parse_args(argv)
    train, infer = core_speed(quick=args.quick, preset=args.preset, batch=args.batch, seq=args.seq,
                              repeats=args.repeats, fp32=args.fp32)
    print(f"summary: supernet/standalone {train['ratio']:.3f} (<= 1.10 {'ok' if train['ratio'] <= 1.10 else 'MISSED'}); "
          f"elasticlm/BertModel worst {infer['ratio']:.3f} (<= 1.05 {'ok' if infer['ratio'] <= 1.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

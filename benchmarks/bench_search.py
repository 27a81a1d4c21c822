"""Search speed: search wall time / bare forward cost of the distinct candidates (target ≤ 1.2).

    python benchmarks/bench_search.py [--quick] [--preset demo]
"""

from __future__ import annotations

import argparse

from elasticlm.search.benchmark import search_speed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smaller search (seconds)")
    ap.add_argument("--preset", default="demo", help="space dimensions (demo, micro, tiny, small)")
    args = ap.parse_args()
    r = search_speed(quick=args.quick, preset=args.preset)
    print(f"{r['name']}: {r['ratio']:.3f} (target ≤ {r['target']}) {'ok' if r['ok'] else 'MISSED'}; "
          f"{r['candidates']} candidates on {r['examples']} examples in {r['search_s']:.2f} s "
          f"({r['candidates_per_s']:.2f}/s), bare forwards {r['bare_s']:.2f} s; {r['precision']} on {r['device']}")


if __name__ == "__main__":
    main()

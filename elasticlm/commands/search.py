"""`elasticlm search` and `elasticlm heads`: architecture search on a fine-tuned supernet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elasticlm.commands.options import add_fields, build

SEARCH = "elasticlm.search.search_stages:SearchConfig"

SEARCH_EXAMPLE = """examples:
  elasticlm search --supernet runs/demo/supernet-ft --out runs/demo/search
  elasticlm search --supernet runs/micro/supernet-ft --ceiling 5e6 --floor 4e6 --population 50 --generations 40 \\
      --out runs/micro/search
  elasticlm search --supernet runs/small/supernet-ft --mode pareto --out runs/small/pareto \\
      'budgets={"micro": 5000000, "tiny": 10000000, "small": 15700000}'
  elasticlm search --supernet runs/demo/supernet-ft --latency-ms 4 --out runs/demo/fast
A killed search resumes from generations.jsonl when rerun into the same --out.
"""

HEADS_EXAMPLE = """examples:
  elasticlm heads --supernet runs/demo/supernet-ft --arch runs/demo/search --out runs/demo/heads
  elasticlm heads --supernet runs/demo/supernet-ft --arch my-arch.json --eta 0.8 --out runs/demo/heads-0.8
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="evolutionary (or Pareto) architecture search on a fine-tuned supernet",
                              epilog=SEARCH_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, help="a fine-tuned supernet folder (elasticlm supernet finetune --out)")
    add_fields(p, SEARCH, ["task", ("data-dir", "data_dir"), "mode", "ceiling", "floor", ("latency-ms", "latency_ms"),
                           "evolution.population", "evolution.generations", ("seed", "evolution.seed")])
    _shared(p)
    p.set_defaults(func=_search)

    h = subparsers.add_parser("heads", help="head-number search (merge heads whose outputs are alike, CKA)",
                              epilog=HEADS_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_argument("--supernet", required=True, help="the fine-tuned supernet folder the search used")
    h.add_argument("--arch", required=True, help="an arch.json, or a search folder (its best architecture)")
    add_fields(h, SEARCH, ["task", ("data-dir", "data_dir"), "heads.eta"])
    _shared(h)
    h.set_defaults(func=_heads)


def _shared(p) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--config", help="YAML file with search config fields")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any config field, e.g. evolution.parents=10")


def _config(args):
    from elasticlm.search.search_stages import SearchConfig

    return build(SearchConfig(), args)


def load_arch(path: str):
    """An architecture from an arch.json file, or from a search folder / its result.json (the best)."""
    from elasticlm.errors import ElasticLMError
    from elasticlm.space import Architecture

    p = Path(path)
    if p.is_dir():
        p = p / "result.json" if (p / "result.json").exists() else p / "arch.json"
    if not p.is_file():
        raise ElasticLMError(f"{path}: no arch.json or search result.json there")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ElasticLMError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(data, dict) and "best" in data:
        data = data["best"]
    layers = data.get("layers", data.get("arch")) if isinstance(data, dict) else data
    if layers is None:
        raise ElasticLMError(f"{p}: expected {{\"layers\": [...]}}")
    return Architecture.from_list(layers)


def _search(args) -> int:
    from elasticlm.search.search_stages import run_search

    cfg = _config(args)
    res = run_search(cfg, args.supernet, args.out)
    b = res["best"]
    print(f"best: {b['short']} ({b['params'] / 1e6:.2f}M parameters), {res['metric']} {b['fitness']:.4f} on the "
          f"held-out split; {res['evaluated']} architectures in {res['seconds']:.1f} s "
          f"({res['candidates_per_s']:.2f}/s); {Path(args.out) / 'generations.jsonl'}")
    return 0


def _heads(args) -> int:
    from elasticlm.search.search_stages import run_heads

    cfg = _config(args)
    arch = load_arch(args.arch)
    res = run_heads(cfg, args.supernet, arch, args.out)
    print(f"final architecture: {res['short']} ({res['params'] / 1e6:.2f}M) -> {Path(args.out) / 'arch.json'}")
    return 0

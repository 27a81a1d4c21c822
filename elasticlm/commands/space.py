"""`elasticlm space`: look at a search space, sample from it, or check an architecture file.

    elasticlm space --preset small --sample 5 --seed 0
    elasticlm space --preset micro --arch arch.json        # validate + count a given architecture
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from elasticlm.errors import ElasticLMError
from elasticlm.space import BLOCK_KINDS, PRESETS, Architecture, get_preset


EXAMPLES = """examples:
  elasticlm space --preset small --sample 5 --seed 0       five sampled architectures and their sizes
  elasticlm space --preset micro --within --json           five under the ceiling, as JSON lines
  elasticlm space --preset demo --arch runs/demo/arch.json  validate and count one architecture
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="show a search space, sample architectures, count parameters",
                       description="Print a preset's search space, sampled architectures and their parameter counts.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", help=f"one of: {', '.join(PRESETS)} (default: small)")
    p.add_argument("--sample", type=int, default=5, metavar="K", help="architectures to sample (default 5)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--within", action="store_true", help="sample only architectures under the preset's ceiling")
    p.add_argument("--arch", type=Path, help="validate and count this architecture JSON file instead of sampling")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(func=run)


def _row(space, arch: Architecture) -> dict:
    count = space.count_params(arch)
    return {"params": count.total, "non_embedding": count.non_embedding,
            "within_ceiling": space.within_budget(arch), "layers": arch.to_list()}


def run(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    space = preset.space
    if args.sample < 0:
        raise ElasticLMError(f"--sample must be >= 0, got {args.sample}")
    if args.arch is not None:
        try:
            text = args.arch.read_text(encoding="utf-8-sig")  # a BOM is fine
        except (OSError, UnicodeDecodeError) as err:
            raise ElasticLMError(f"cannot read architecture file {args.arch}: {err}") from None
        try:
            archs = [space.arch_from_json(text)]
        except ValueError as err:
            raise ElasticLMError(f"{args.arch}: {err}") from None
    else:
        rng = random.Random(args.seed)
        archs = [space.sample_within(rng) if args.within else space.sample(rng) for _ in range(args.sample)]
    if args.json:
        for arch in archs:
            print(json.dumps(_row(space, arch)))
        return 0
    ceiling = f"{space.param_ceiling:,}" if space.param_ceiling else "none"
    print(f"preset {preset.name}: {preset.about}")
    print(f"  d={space.hidden_size} L={space.num_layers} H={space.num_heads} e={space.embedding_size} "
          f"i={space.inner_size} V={space.vocab_size} ceiling={ceiling}")
    print(f"  candidates per layer: {len(space.candidates)} ({', '.join(k + '/' + s for k, s in space.candidates)})")
    print(f"  FFN grid: {', '.join(map(str, space.ffn_grid))}")
    print(f"  space size: {space.size(with_ffn=False):,} block choices "
          f"({len(space.candidates)}^{space.num_layers}); "
          f"~10^{math.log10(space.size()):.1f} with FFN widths")
    print(f"  embedding parameters: {space.embedding_params():,}")
    tags = " ".join(f"{k.letter}={k.name}" for k in BLOCK_KINDS.values())
    print(f"  (layer tags: {tags}, -/qv/kv sharing, /ffn_dim/heads)")
    for i, arch in enumerate(archs):
        c = space.count_params(arch)
        mark = "" if space.within_budget(arch) else "  (over ceiling)"
        print(f"[{i}] total {c.total / 1e6:6.2f}M  non-emb {c.non_embedding / 1e6:5.2f}M{mark}  {arch.short()}")
    return 0

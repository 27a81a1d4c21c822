"""Core speed benchmark: prints ratios measured in one run (lower is better for us).

1. Supernet forward+backward along a sampled path vs the extracted standalone model on the same
   architecture and batch (train mode, bf16 autocast by default). Target: ratio <= 1.10.
2. Standalone inference latency of an all-bert, no-sharing, uniform architecture (FFN = d) vs
   transformers' `BertModel` with the same dimensions (no pooler), batch 1 and 32 at N=128, fp32 and
   bf16 autocast. Target: ratio <= 1.05.

Timings alternate between the two sides and report medians, so machine noise hits both alike.

    python benchmarks/bench_core.py                 # ELM-Small dimensions (d=528, L=12)
    python benchmarks/bench_core.py --preset micro  # smaller
    python benchmarks/bench_core.py --quick         # a few repeats, tiny batch: checks it runs
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

import torch
from transformers import BertConfig, BertModel

from elasticlm.models import ElasticLMConfig, ElasticLMModel, SuperNet, SupernetConfig
from elasticlm.space import get_preset


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def alternate(fns: dict, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each fn, calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_supernet_vs_standalone(preset: str, batch: int, seq: int, repeats: int, bf16: bool) -> float:
    space = get_preset(preset).space
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(space)).train()
    rng = random.Random(0)
    for (l, kind, sharing), _ in net.blocks():  # realistic grown widths
        net.grow_ffn(l, kind, sharing, rng.choice(space.ffn_grid))
    arch = space.sample(rng, net.widths())
    model = net.extract(arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    ids = torch.randint(1, space.vocab_size, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)

    def supernet_step():
        net.zero_grad(set_to_none=True)
        with autocast(bf16):
            out = net(ids, arch, mask).last_hidden_state
        out.float().pow(2).mean().backward()

    def standalone_step():
        model.zero_grad(set_to_none=True)
        with autocast(bf16):
            out = model.encode(ids, mask).last_hidden_state
        out.float().pow(2).mean().backward()

    t = alternate({"supernet": supernet_step, "standalone": standalone_step}, repeats)
    ratio = t["supernet"] / t["standalone"]
    print(f"supernet path fwd+bwd  {preset} B={batch} N={seq} {'bf16' if bf16 else 'fp32'}: "
          f"supernet {t['supernet'] * 1e3:8.1f} ms  standalone {t['standalone'] * 1e3:8.1f} ms  "
          f"ratio {ratio:.3f}  (target <= 1.10)  arch {arch.short()}")
    return ratio


def bench_vs_bert(preset: str, batches: list[int], seq: int, repeats: int) -> list[float]:
    space = get_preset(preset).space
    d, L, H = space.hidden_size, space.num_layers, space.num_heads
    torch.manual_seed(0)
    ours = ElasticLMModel(ElasticLMConfig.from_space(space, space.uniform("bert", "none", d, H))).eval()
    bert = BertModel(BertConfig(vocab_size=space.vocab_size, hidden_size=d, num_hidden_layers=L,
                                num_attention_heads=H, intermediate_size=d,
                                max_position_embeddings=space.max_position_embeddings),
                     add_pooling_layer=False).eval()
    ratios = []
    for bf16 in (False, True):
        for b in batches:
            ids = torch.randint(1, space.vocab_size, (b, seq))
            mask = torch.ones(b, seq, dtype=torch.long)

            def run(m):
                def call():
                    with torch.inference_mode(), autocast(bf16):
                        m(input_ids=ids, attention_mask=mask)
                return call

            reps = repeats if b > 1 else repeats * 4
            t = alternate({"elasticlm": run(ours), "bert": run(bert)}, reps)
            ratio = t["elasticlm"] / t["bert"]
            ratios.append(ratio)
            print(f"inference vs BertModel d={d} L={L} B={b:<3d} N={seq} {'bf16' if bf16 else 'fp32'}: "
                  f"elasticlm {t['elasticlm'] * 1e3:8.2f} ms  BertModel {t['bert'] * 1e3:8.2f} ms  "
                  f"ratio {ratio:.3f}  (target <= 1.05)")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=16, help="training batch for the supernet comparison")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--fp32", action="store_true", help="train comparison in fp32 instead of bf16 autocast")
    p.add_argument("--quick", action="store_true", help="tiny settings: only checks the benchmark runs")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.seq, args.repeats = "demo", 2, 32, 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    train = bench_supernet_vs_standalone(args.preset, args.batch, args.seq, args.repeats, not args.fp32)
    infer = bench_vs_bert(args.preset, [1, 2 if args.quick else 32], args.seq, args.repeats)
    print(f"summary: supernet/standalone {train:.3f} (<= 1.10 {'ok' if train <= 1.10 else 'MISSED'}); "
          f"elasticlm/BertModel worst {max(infer):.3f} (<= 1.05 {'ok' if max(infer) <= 1.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

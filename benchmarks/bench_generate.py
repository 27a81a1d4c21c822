"""Generation speed of the causal elasticlm decoder: prints ratios measured in one run.

1. Cached greedy generation, tokens/s, vs HF `LlamaForCausalLM` of the same width, depth, heads,
   FFN width (Llama's gated FFN has a third matrix) and vocabulary, both through `generate()`,
   batch 1, uniform bert/none architecture.  Target: ratio >= 0.9.
2. Cached vs uncached generation of 128 new tokens by the same model.  Target: ratio >= 3.

Runs alternate between the two models and the best of `--repeats` counts, so a shared, noisy
machine hurts both sides alike.

    python benchmarks/bench_generate.py                 # d=528, L=12, V=49,152 (SmolLM2's vocabulary)
    python benchmarks/bench_generate.py --hidden 192 --layers 4
    python benchmarks/bench_generate.py --quick         # tiny settings: checks it runs
"""

from __future__ import annotations

import argparse
import time

import torch

from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM
from elasticlm.space import SearchSpace


def build(hidden: int, layers: int, heads: int, vocab: int, positions: int):
    """(elasticlm decoder, LlamaForCausalLM) with matching dimensions, random weights, eval mode, fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    space = SearchSpace(hidden_size=hidden, num_layers=layers, num_heads=heads, vocab_size=vocab,
                        max_position_embeddings=positions)
    arch = space.uniform("bert", "none", hidden, heads)
    cfg = ElasticLMConfig.from_space(space, arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                     pad_token_id=0, eos_token_id=None)
    llama_cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            num_key_value_heads=heads, intermediate_size=hidden, vocab_size=vocab,
                            max_position_embeddings=positions, tie_word_embeddings=True, pad_token_id=0,
                            eos_token_id=None, bos_token_id=None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ours, llama = ElasticLMForCausalLM(cfg).eval(), LlamaForCausalLM(llama_cfg).eval()
    return ours, llama


def time_generate(model, prompt: torch.Tensor, new: int, *, use_cache: bool) -> float:
    """Seconds for one greedy generate() of exactly `new` tokens."""
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                             min_new_tokens=new, do_sample=False, use_cache=use_cache, pad_token_id=0)
        elapsed = time.perf_counter() - start
    if out.shape[1] != prompt.shape[1] + new:
        raise RuntimeError(f"expected {new} new tokens, got {out.shape[1] - prompt.shape[1]}")
    return elapsed


def best(fns: dict, repeats: int) -> dict[str, float]:
    """Best time of each callable over `repeats` rounds, the callables alternating within a round."""
    times = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k] = min(times[k], fn())
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=528)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    ap.add_argument("--new", type=int, default=128, help="generated tokens")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--quick", action="store_true", help="tiny model, few tokens: checks that it runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.layers, args.heads, args.vocab, args.new, args.repeats = 48, 2, 4, 500, 24, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, llama = build(args.hidden, args.layers, args.heads, args.vocab, args.prompt + args.new + 8)
    prompt = torch.randint(5, args.vocab, (1, args.prompt), generator=torch.Generator().manual_seed(0))
    print(f"d={args.hidden} L={args.layers} H={args.heads} V={args.vocab} prompt {args.prompt} -> +{args.new} tokens, "
          f"batch 1, fp32, {torch.get_num_threads()} threads; params: elasticlm {ours.num_parameters():,}, "
          f"llama {llama.num_parameters():,}")
    for m in (ours, llama):  # warm-up
        time_generate(m, prompt, 4, use_cache=True)
    t = best({"ours": lambda: time_generate(ours, prompt, args.new, use_cache=True),
              "llama": lambda: time_generate(llama, prompt, args.new, use_cache=True),
              "uncached": lambda: time_generate(ours, prompt, args.new, use_cache=False)}, args.repeats)
    tps = {k: args.new / v for k, v in t.items()}
    print(f"cached greedy: elasticlm {tps['ours']:.1f} tok/s, LlamaForCausalLM {tps['llama']:.1f} tok/s")
    print(f"uncached greedy: elasticlm {tps['uncached']:.1f} tok/s")
    r1, r2 = tps["ours"] / tps["llama"], t["uncached"] / t["ours"]
    print(f"summary: elasticlm/llama cached tokens/s {r1:.2f} (target >= 0.9); "
          f"cached/uncached speed-up over {args.new} tokens {r2:.2f}x (target >= 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

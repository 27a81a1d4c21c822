"""Generation speed of the causal elasticlm decoder, measured in one run (`elasticlm bench --only generate`).

1. Cached greedy generation, tokens/s, vs HF `LlamaForCausalLM` of the same width, depth, heads,
   FFN width (Llama's gated FFN has a third matrix) and vocabulary, both through `generate()`,
   batch 1, uniform bert/none architecture.  Target: ratio >= 0.9.
2. Cached vs uncached generation of 128 new tokens by the same model.  Target: ratio >= 3.

Runs alternate between the two models and the best of `repeats` counts, so a shared, noisy
machine hurts both sides alike. Defaults: d=528, L=12, V=49,152 (SmolLM2's vocabulary), a 16-token
prompt, 128 new tokens, 3 repeats, fp32 on the CPU (`generate.hidden=192 generate.layers=4` for the
demo's size; `--threads 1` for one thread).
"""

from __future__ import annotations

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


def generate_speed(*, quick: bool = False, hidden: int | None = None, layers: int | None = None,
                   heads: int | None = None, vocab: int | None = None, prompt: int = 16, new: int | None = None,
                   repeats: int | None = None, say=print) -> list[dict]:
    """Both generation ratios. quick: d=48, L=2, 4 heads, V=500, 24 new tokens, 1 repeat (checks it runs)."""
    d = (48, 2, 4, 500, 24, 1) if quick else (528, 12, 12, 49152, 128, 3)
    hidden, layers, heads, vocab, new, repeats = (v if v is not None else dv for v, dv in
                                                  zip((hidden, layers, heads, vocab, new, repeats), d))
    ours, llama = build(hidden, layers, heads, vocab, prompt + new + 8)
    ids = torch.randint(5, vocab, (1, prompt), generator=torch.Generator().manual_seed(0))
    say(f"d={hidden} L={layers} H={heads} V={vocab} prompt {prompt} -> +{new} tokens, batch 1, fp32, "
        f"{torch.get_num_threads()} threads; params: elasticlm {ours.num_parameters():,}, "
        f"llama {llama.num_parameters():,}")
    for m in (ours, llama):  # warm-up
        time_generate(m, ids, 4, use_cache=True)
    t = best({"ours": lambda: time_generate(ours, ids, new, use_cache=True),
              "llama": lambda: time_generate(llama, ids, new, use_cache=True),
              "uncached": lambda: time_generate(ours, ids, new, use_cache=False)}, repeats)
    tps = {k: new / v for k, v in t.items()}
    say(f"cached greedy: elasticlm {tps['ours']:.1f} tok/s, LlamaForCausalLM {tps['llama']:.1f} tok/s")
    say(f"uncached greedy: elasticlm {tps['uncached']:.1f} tok/s")
    shape = {"hidden": hidden, "layers": layers, "heads": heads, "vocab": vocab, "prompt": prompt, "new": new}
    return [{"name": "cached generation tokens/s / LlamaForCausalLM", "ratio": tps["ours"] / tps["llama"],
             "target": 0.9, "cmp": ">=", "elasticlm_tokens_per_s": round(tps["ours"], 2),
             "llama_tokens_per_s": round(tps["llama"], 2), **shape},
            {"name": "cached / uncached generation speed-up", "ratio": t["uncached"] / t["ours"], "target": 3,
             "cmp": ">=", "uncached_tokens_per_s": round(tps["uncached"], 2), **shape}]

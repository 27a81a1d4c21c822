"""Model speed, measured in one run (`elasticlm bench --only core`).

1. Supernet forward+backward along a sampled path vs the extracted standalone model of the same
   architecture on the same batch (train mode, bf16 autocast by default). Target: ratio ≤ 1.10.
2. Standalone inference of an all-bert, no-sharing, uniform architecture (FFN = d) vs transformers'
   `BertModel` of the same dimensions (no pooler), batch 1 and 32 at N=128, fp32 and bf16 autocast;
   the worst of the four ratios. Target: ≤ 1.05.

Timings alternate between the two sides and report medians, so machine noise hits both alike.
"""

from __future__ import annotations

import random
import statistics
import time

import torch

from elasticlm.models import ElasticLMConfig, ElasticLMModel, SuperNet, SupernetConfig
from elasticlm.runtime import autocast
from elasticlm.space import get_preset


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings on CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def alternate(fns: dict, repeats: int, device: torch.device, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each fn, the calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def supernet_vs_standalone(preset: str, batch: int, seq: int, repeats: int, bf16: bool, device: torch.device,
                           say=print) -> dict:
    """Forward+backward of a supernet path against the extracted model (realistic grown widths)."""
    space = get_preset(preset).space
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(space)).train()
    rng = random.Random(0)
    for (l, kind, sharing), _ in net.blocks():
        net.grow_ffn(l, kind, sharing, rng.choice(space.ffn_grid))
    arch = space.sample(rng, net.widths())
    model = net.extract(arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train().to(device)
    net.to(device)
    ids = torch.randint(1, space.vocab_size, (batch, seq), device=device)
    mask = torch.ones(batch, seq, dtype=torch.long, device=device)

    def supernet_step():
        net.zero_grad(set_to_none=True)
        with autocast(bf16, device.type):
            out = net(ids, arch, mask).last_hidden_state
        out.float().pow(2).mean().backward()

    def standalone_step():
        model.zero_grad(set_to_none=True)
        with autocast(bf16, device.type):
            out = model.encode(ids, mask).last_hidden_state
        out.float().pow(2).mean().backward()

    t = alternate({"supernet": supernet_step, "standalone": standalone_step}, repeats, device)
    ratio = t["supernet"] / t["standalone"]
    say(f"supernet path fwd+bwd  {preset} B={batch} N={seq} {'bf16' if bf16 else 'fp32'}: "
        f"supernet {t['supernet'] * 1e3:8.1f} ms  standalone {t['standalone'] * 1e3:8.1f} ms  "
        f"ratio {ratio:.3f}  (target <= 1.10)  arch {arch.short()}")
    return {"name": f"supernet path fwd+bwd / standalone ({'bf16' if bf16 else 'fp32'})", "ratio": ratio,
            "target": 1.10, "cmp": "<=", "supernet_ms": round(t["supernet"] * 1e3, 3),
            "standalone_ms": round(t["standalone"] * 1e3, 3), "preset": preset, "batch": batch, "seq": seq,
            "arch": arch.short(), "device": device.type}


def inference_vs_bert(preset: str, batches: list[int], seq: int, repeats: int, device: torch.device,
                      say=print) -> dict:
    """Our standalone model against `BertModel` of the same dimensions; the worst ratio counts."""
    from transformers import BertConfig, BertModel

    space = get_preset(preset).space
    d, L, H = space.hidden_size, space.num_layers, space.num_heads
    torch.manual_seed(0)
    ours = ElasticLMModel(ElasticLMConfig.from_space(space, space.uniform("bert", "none", d, H))).eval().to(device)
    bert = BertModel(BertConfig(vocab_size=space.vocab_size, hidden_size=d, num_hidden_layers=L,
                                num_attention_heads=H, intermediate_size=d,
                                max_position_embeddings=space.max_position_embeddings),
                     add_pooling_layer=False).eval().to(device)
    cases = []
    for bf16 in (False, True):
        for b in batches:
            ids = torch.randint(1, space.vocab_size, (b, seq), device=device)
            mask = torch.ones(b, seq, dtype=torch.long, device=device)

            def run(m, ids=ids, mask=mask, bf16=bf16):
                def call():
                    with torch.inference_mode(), autocast(bf16, device.type):
                        m(input_ids=ids, attention_mask=mask)
                return call

            t = alternate({"elasticlm": run(ours), "bert": run(bert)}, repeats if b > 1 else repeats * 4, device)
            ratio = t["elasticlm"] / t["bert"]
            cases.append({"batch": b, "precision": "bf16" if bf16 else "fp32", "ratio": round(ratio, 4),
                          "elasticlm_ms": round(t["elasticlm"] * 1e3, 3), "bert_ms": round(t["bert"] * 1e3, 3)})
            say(f"inference vs BertModel d={d} L={L} B={b:<3d} N={seq} {'bf16' if bf16 else 'fp32'}: "
                f"elasticlm {t['elasticlm'] * 1e3:8.2f} ms  BertModel {t['bert'] * 1e3:8.2f} ms  "
                f"ratio {ratio:.3f}  (target <= 1.05)")
    worst = max(c["ratio"] for c in cases)
    return {"name": "standalone inference / BertModel (worst case)", "ratio": worst, "target": 1.05, "cmp": "<=",
            "cases": cases, "preset": preset, "seq": seq, "device": device.type}


def core_speed(*, quick: bool = False, preset: str | None = None, batch: int | None = None, seq: int | None = None,
               repeats: int | None = None, fp32: bool = False, device: str | None = None, say=print) -> list[dict]:
    """Both model-speed ratios. Defaults: ELM-Small dims, training batch 16, N=128, 10 repeats;
    quick: demo dims, batch 2, N=32, 2 repeats. `fp32` trains the path comparison without autocast."""
    d = ("demo", 2, 32, 2) if quick else ("small", 16, 128, 10)
    preset, batch, seq, repeats = (v if v is not None else dv for v, dv in zip((preset, batch, seq, repeats), d))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    say(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dev.type}")
    return [supernet_vs_standalone(preset, batch, seq, repeats, not fp32, dev, say),
            inference_vs_bert(preset, [1, 2 if quick else 32], seq, repeats, dev, say)]

"""Latency predictor error: the per-block table's sum vs the measured latency of the standalone model.

For `subnets` random architectures of the space (`space.sample(random.Random(seed))`, …), the
relative error |predicted − measured| / measured, where measured is `model_latency` of
`ElasticLMModel(ElasticLMConfig.from_space(space, arch))` and predicted is `LatencyTable.predict(arch,
head=False)` (the same model: embeddings and blocks). Target: median ≤ 10%. Run by `elasticlm bench
--only latency`; the predictor itself is `elasticlm.search.latency`.
"""

from __future__ import annotations

import random
import statistics

import torch


def predictor_error(*, quick: bool = False, preset: str = "demo", subnets: int = 20, seed: int = 0,
                    batch: int = 1, seq_len: int = 128, repeats: int | None = None, fresh: bool = True,
                    threads: int | None = None, clock: str = "wall", device: str | None = None, say=print) -> dict:
    """{"ratio": median relative error, "target": 0.10, "max", "subnets": [...], ...}.

    fresh=True measures the table now, next to the models (so a load change between the table's day
    and today is not counted as predictor error); fresh=False uses the machine's cached table, as
    the search's latency limit does. quick: fewer timed calls per entry and model. threads: torch's
    intra-op threads while timing (default: as set; see `elasticlm.search.latency.num_threads`).
    clock: "wall" or "cpu" (`elasticlm.search.latency.CLOCKS`; cpu with threads=1 on a busy shared machine)."""
    from elasticlm.search.latency import num_threads

    with num_threads(threads):
        return _predictor_error(quick, preset, subnets, seed, batch, seq_len, repeats, fresh, clock, device, say)


def _predictor_error(quick, preset, subnets, seed, batch, seq_len, repeats, fresh, clock, device, say) -> dict:
    from elasticlm.models import ElasticLMConfig, ElasticLMModel
    from elasticlm.search.latency import LatencyTable, model_latency
    from elasticlm.space import get_preset

    space = get_preset(preset).space
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    reps = repeats or (10 if quick else 30)
    table = LatencyTable.load_or_build(space, device=device, batch=batch, seq_len=seq_len, rebuild=fresh,
                                       repeats=reps, warmup=max(2, reps // 5), clock=clock)
    say(f"latency table: {len(table.entries)} entries ({'measured now' if fresh else 'from the cache'}, "
        f"{table.seconds:.1f} s to measure), {preset} dims, batch {batch}, N={seq_len}, {table.dtype} on {device}, "
        f"{torch.get_num_threads()} threads, {clock} clock")
    rows = []
    for i in range(subnets):
        arch = space.sample(random.Random(seed + i))
        torch.manual_seed(seed + i)  # weights are irrelevant to latency; fixed for reproducibility
        model = ElasticLMModel(ElasticLMConfig.from_space(space, arch)).to(device).eval()
        measured = model_latency(model, batch=batch, seq_len=seq_len, repeats=reps, warmup=max(2, reps // 5),
                                 clock=clock)
        predicted = table.predict(arch, head=False)
        err = abs(predicted - measured) / measured
        rows.append({"arch": arch.short(), "predicted_ms": round(predicted, 4), "measured_ms": round(measured, 4),
                     "rel_error": round(err, 4)})
        say(f"  {arch.short():40s} predicted {predicted:7.3f} ms  measured {measured:7.3f} ms  error {err:6.1%}")
        del model
    errors = [r["rel_error"] for r in rows]
    med = statistics.median(errors)
    signed = statistics.median((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows)
    return {"name": "latency predictor, median relative error", "ratio": med, "target": 0.10, "cmp": "<=",
            "ok": med <= 0.10, "max": max(errors), "median_signed": round(signed, 4), "preset": preset,
            "batch": batch, "seq_len": seq_len, "clock": clock, "device": device, "threads": torch.get_num_threads(),
            "table_entries": len(table.entries), "table_seconds": table.seconds, "fresh": fresh,
            "subnets": rows}

"""Search speed: wall time of a seeded evolution over the bare cost of the forward passes of the distinct
candidates it scored (the same batches, timed alone). Target ≤ 1.2: search costs about what the
inference it needs costs. Run by `elasticlm bench --only search`."""

from __future__ import annotations

import random
import time

import torch


def search_speed(*, quick: bool = False, preset: str = "demo", examples: int | None = None,
                 device: str | None = None, seed: int = 0) -> dict:
    """{"ratio", "target", "search_s", "bare_s", "candidates", "candidates_per_s", ...} measured in one run."""
    import datasets

    from elasticlm.data.spec import TaskSpec
    from elasticlm.runtime import autocast, bf16_is_faster
    from elasticlm.search.evaluator import SupernetFitness
    from elasticlm.search.evolution import Budget, EvolutionConfig, evolve
    from elasticlm.space import get_preset
    from elasticlm.train.evaluation import Batches
    from elasticlm.train.supernet import build_supernet

    space = get_preset(preset).space
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = bf16_is_faster()
    net = build_supernet(space, fixed=True, seed=seed, task_heads={"bench": {"kind": "classification",
                                                                            "num_labels": 2}}).to(device).eval()
    n = examples or (256 if quick else 1000)
    rng = random.Random(seed)
    rows = []
    for i in range(n):  # sentence lengths like a single-sentence task (8–64 tokens)
        k = rng.randint(8, min(64, space.max_position_embeddings))
        rows.append({"input_ids": [rng.randrange(1000, space.vocab_size) for _ in range(k)], "attention_mask": [1] * k,
                     "token_type_ids": [0] * k, "labels": i % 2})
    batches = Batches.build(datasets.Dataset.from_list(rows).with_format("torch"), 0, batch_size=256, device=device)
    spec = TaskSpec("bench", "classification", ("text_a",), ("neg", "pos"), ("accuracy",), "accuracy")
    fitness = SupernetFitness(net, "bench", spec, batches, bf16=bf16)
    cfg = EvolutionConfig(population=6 if quick else 16, generations=2 if quick else 4, parents=3, seed=seed)
    fitness([space.sample(random.Random(-1), net.widths())])  # warm-up (one-off kernel selection)
    t0 = time.perf_counter()
    out = evolve(space, fitness, cfg, budget=Budget(space.param_ceiling), widths=net.widths())
    search_s = time.perf_counter() - t0
    archs = list(out.scores)

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(bf16, torch.device(device).type):
            for arch in archs:
                for b in batches.batches:
                    h = net(b["input_ids"], arch, attention_mask=b["attention_mask"],
                            token_type_ids=b["token_type_ids"]).last_hidden_state
                    net.task_logits("bench", h, b["attention_mask"])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    bare_s = bare()
    again = time.perf_counter()
    out = evolve(space, fitness, cfg, budget=Budget(space.param_ceiling), widths=net.widths())  # scored again
    search_s = (search_s + time.perf_counter() - again) / 2  # search, bare, search: load drifts cancel
    return {"name": "search wall time / bare forward passes", "ratio": search_s / bare_s, "target": 1.2,
            "ok": search_s / bare_s <= 1.2, "search_s": round(search_s, 3), "bare_s": round(bare_s, 3),
            "candidates": len(archs), "candidates_per_s": round(len(archs) / search_s, 2), "examples": n,
            "preset": preset, "precision": "bf16" if bf16 else "fp32", "device": device}

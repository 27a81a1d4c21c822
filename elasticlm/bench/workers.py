"""Retraining several small models side by side (`elasticlm bench --only workers`).

A run retrains the found model and its baselines; `retrain.workers` trains them in forked processes
that split the CPU threads (`elasticlm.runtime.run_jobs`). Measured here in one run: the wall time of
`jobs` demo-sized classifiers (BERT blocks, d=192, L=4, 30k vocabulary, batch 32 × 40 tokens, AdamW,
the machine's precision) trained `steps` steps each, two workers against one after the other with
all threads. Target: ratio ≤ 0.85 on 2 CPU cores (on a GPU the jobs always run one after the other).
"""

from __future__ import annotations

import time

import torch

from elasticlm.runtime import autocast, resolve_bf16, run_jobs


def _train_one(seed: int, steps: int, bf16: bool) -> float:
    """Train one demo-sized classifier `steps` steps on random tokens; its last loss."""
    from transformers import BertConfig, BertForSequenceClassification

    from elasticlm.train.engine import make_optimizer

    g = torch.Generator().manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=192, num_hidden_layers=4, num_attention_heads=12,
                     intermediate_size=192, max_position_embeddings=128, num_labels=2)
    torch.manual_seed(seed)  # the model's own init (a benchmark, not a run)
    model = BertForSequenceClassification(cfg)
    opt = make_optimizer(list(model.named_parameters()), 1e-4, 0.01)
    loss = torch.zeros(())
    for _ in range(steps):
        ids = torch.randint(1000, 30000, (32, 40), generator=g)
        labels = torch.randint(0, 2, (32,), generator=g)
        with autocast(bf16, "cpu"):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def workers_speed(*, quick: bool = False, jobs: int = 4, steps: int | None = None, workers: int = 2,
                  say=print) -> dict:
    steps = steps or (20 if quick else 150)
    bf16 = resolve_bf16("auto")
    todo = [lambda _say, s=s: _train_one(s, steps, bf16) for s in range(jobs)]
    _train_one(99, 3, bf16)  # warm-up
    t = time.perf_counter()
    one = run_jobs(todo, 1)
    t_one = time.perf_counter() - t
    t = time.perf_counter()
    many = run_jobs(todo, workers)
    t_many = time.perf_counter() - t
    say(f"{jobs} models × {steps} steps: one after the other {t_one:.1f} s ({torch.get_num_threads()} threads), "
        f"{workers} workers {t_many:.1f} s")
    return {"name": f"{workers} retraining workers vs one after the other (wall time)", "ratio": t_many / t_one,
            "target": 0.85, "ok": t_many / t_one <= 0.85, "seconds_sequential": round(t_one, 2),
            "seconds_workers": round(t_many, 2), "jobs": jobs, "steps": steps, "bf16": bf16,
            "last_losses_match": bool(max(abs(a - b) for a, b in zip(one, many)) < 0.05)}

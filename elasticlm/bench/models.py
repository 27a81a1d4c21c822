"""Latency of a run's found model against HF `BertModel` of the same parameter budget and the run's
uniform baselines (batch 1 and 32, N=128, on the machine at hand; `elasticlm bench --run RUN`).

The BERT of the same budget is a uniform `BertModel` (with its pooler; the found model counts its
classification head) with the found model's depth, vocabulary and positions, FFN = 4×hidden and
64-dimensional heads where the width allows, whose hidden size (a multiple of 16) brings its
parameter count closest to the found model's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from elasticlm.errors import ElasticLMError

BASELINES = ("uniform-bert", "uniform-mobile")


def bert_of_budget(params: int, *, layers: int, vocab_size: int, max_positions: int, type_vocab_size: int = 2):
    """The transformers `BertConfig` (uniform layers, FFN 4h) whose `BertModel` is closest to `params`."""
    from transformers import BertConfig, BertModel

    def count(h: int) -> int:
        emb = (vocab_size + max_positions + type_vocab_size) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * 4 * h + 4 * h) + (4 * h * h + h) + 2 * h
        return emb + layers * layer + (h * h + h)  # + pooler

    best = min(range(16, 2049, 16), key=lambda h: abs(count(h) - params))
    heads = max(h for h in range(1, 33) if best % h == 0 and best // h >= min(64, best))
    cfg = BertConfig(vocab_size=vocab_size, hidden_size=best, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * best, max_position_embeddings=max_positions,
                     type_vocab_size=type_vocab_size)
    model_params = BertModel(cfg).num_parameters()
    assert model_params == count(best), (model_params, count(best))  # the closed form is BertModel's count
    return cfg


def compare_run(run_dir: str | Path, *, batches: tuple[int, ...] = (1, 32), seq_len: int = 128,
                device: str | None = None, repeats: int = 20, threads: int | None = None, clock: str = "wall",
                say=print) -> dict:
    """{"device", "seq_len", "models": {name: {"params", "config", "latency_ms": {batch: ms}}},
    "ratios": {"found / NAME": {batch: ratio}}} for found, HF BertModel of its budget, and the run's
    uniform baselines (those present). threads: torch's intra-op threads while timing (default: as set)."""
    from elasticlm.search.latency import num_threads

    with num_threads(threads):
        return _compare_run(run_dir, batches, seq_len, device, repeats, clock, say)


def _compare_run(run_dir, batches, seq_len, device, repeats, clock, say) -> dict:
    from transformers import AutoModelForSequenceClassification, BertModel

    import elasticlm.models  # noqa: F401  (registers the Auto classes)
    from elasticlm.search.latency import model_latency

    models_dir = Path(run_dir) / "models"
    found_dir = models_dir / "found"
    if not (found_dir / "config.json").exists():
        raise ElasticLMError(f"{found_dir} holds no saved model; point --run at a finished run folder "
                             f"(elasticlm run --out RUN)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    found = AutoModelForSequenceClassification.from_pretrained(found_dir)
    c = found.config
    n = min(seq_len, c.max_position_embeddings)
    if n != seq_len:
        say(f"N={n}: the found model has {c.max_position_embeddings} positions")
    loaded = {"found": found}
    bert_cfg = bert_of_budget(found.num_parameters(), layers=c.num_hidden_layers, vocab_size=c.vocab_size,
                              max_positions=c.max_position_embeddings, type_vocab_size=c.type_vocab_size)
    torch.manual_seed(0)
    loaded["hf-bert-same-budget"] = BertModel(bert_cfg)
    for name in BASELINES:
        if (models_dir / name / "config.json").exists():
            loaded[name] = AutoModelForSequenceClassification.from_pretrained(models_dir / name)
        else:
            say(f"{models_dir / name}: not there, left out")
    out = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
           "threads": torch.get_num_threads(), "clock": clock, "seq_len": n, "models": {}, "ratios": {}}
    for name, model in loaded.items():
        cfg = model.config
        desc = (f"BertModel h={cfg.hidden_size} L={cfg.num_hidden_layers} FFN={cfg.intermediate_size} "
                f"heads={cfg.num_attention_heads}" if cfg.model_type == "bert" else cfg.arch.short())
        lat = {}
        for b in batches:
            lat[b] = round(model_latency(model, batch=b, seq_len=n, device=device,
                                         repeats=repeats if b == 1 else max(3, repeats // 4), clock=clock), 4)
        out["models"][name] = {"params": model.num_parameters(), "config": desc, "latency_ms": lat}
        model.to("cpu")
    ref = out["models"]["found"]["latency_ms"]
    for name, m in out["models"].items():
        if name != "found":
            out["ratios"][f"found / {name}"] = {b: round(ref[b] / m["latency_ms"][b], 4) for b in batches}
    return out


def format_comparison(result: dict) -> list[str]:
    """The comparison as printable lines (a table, then ratios: below 1 = the found model is faster)."""
    batches = list(next(iter(result["models"].values()))["latency_ms"])
    lines = [f"latency on {result['device']} ({result['threads']} threads, {result['clock']} clock), "
             f"N={result['seq_len']}, median ms:",
             f"  {'model':22s} {'params':>8s} " + " ".join(f"{'B=' + str(b):>10s}" for b in batches) + "  config"]
    for name, m in result["models"].items():
        lines.append(f"  {name:22s} {m['params'] / 1e6:7.2f}M " +
                     " ".join(f"{m['latency_ms'][b]:10.3f}" for b in batches) + f"  {m['config']}")
    for name, r in result["ratios"].items():
        lines.append(f"  {name:32s} " + "  ".join(f"B={b}: {v:.3f}" for b, v in r.items()) +
                     "  (below 1: found is faster)")
    return lines

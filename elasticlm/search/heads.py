"""Head-number search (docs: README, "Head search"): merge heads whose outputs are alike.

For each layer of the found architecture, every head's context output (probabilities @ V, before
the heads are merged) is collected over the real tokens of a probe set, and linear CKA is computed
between every pair of heads. Going through the heads in order, a head is dropped when its CKA with
a head already kept exceeds η; the count kept, H*, is then lowered until it divides the layer's
attention width. The head count is a forward-time choice, so this changes no parameter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elasticlm.analysis.cka import cka_matrix
from elasticlm.space import Architecture, LayerChoice, SearchSpace


@dataclass
class HeadsConfig:
    """Head search settings."""

    enabled: bool = True
    """False keeps every layer's head count (the "no head search" ablation)."""
    eta: float = 0.9
    """CKA above which a later head counts as a duplicate of a kept one."""
    probe_examples: int = 256
    """Held-out examples whose tokens make up the probe set."""
    max_tokens: int = 8192
    """At most this many real tokens per head enter CKA (the first ones)."""


def merge_heads(cka: np.ndarray, eta: float) -> list[int]:
    """Algorithm 1's selection: head h is kept unless CKA(h, k) > eta for an earlier kept head k."""
    kept = [0]
    for h in range(1, cka.shape[0]):
        if all(cka[h, k] <= eta for k in kept):
            kept.append(h)
    return kept


def divisible_heads(n: int, width: int) -> int:
    """The largest head count ≤ n that divides `width`."""
    while width % n:
        n -= 1
    return n


def head_contexts(net, arch: Architecture, batches) -> list[list[torch.Tensor]]:
    """Per layer, per head: the context output at every real token of `batches` (tokens×hd)."""
    from elasticlm.models import Capture

    was = net.training
    net.eval()
    per_layer: list[list[list[torch.Tensor]]] = [[[] for _ in range(c.heads)] for c in arch]
    with torch.inference_mode():
        for b in batches:
            out = net(b["input_ids"], arch, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                      capture=Capture(head_context=True))
            real = b["attention_mask"].bool()  # B×N
            for l, ctx in enumerate(out.head_contexts):  # B×H×N×hd
                for h in range(ctx.shape[1]):
                    per_layer[l][h].append(ctx[:, h][real].float().cpu())
    net.train(was)
    return [[torch.cat(parts) for parts in layer] for layer in per_layer]


def search_heads(net, arch: Architecture, batches, cfg: HeadsConfig) -> tuple[Architecture, list[dict], dict]:
    """The architecture with merged head counts, a per-layer record, and the CKA matrices."""
    space: SearchSpace = net.space
    contexts = head_contexts(net, arch, batches)
    layers, records, matrices = [], [], {}
    for l, (choice, heads) in enumerate(zip(arch, contexts)):
        cka = cka_matrix([h[: cfg.max_tokens] for h in heads])
        kept = merge_heads(cka, cfg.eta)
        width = space.attention_width(choice.kind)
        n = divisible_heads(len(kept), width)
        matrices[f"layer{l}"] = cka
        records.append({"layer": l, "kind": choice.kind, "width": width, "heads_before": choice.heads,
                        "kept": kept, "heads_after": n})
        layers.append(LayerChoice(choice.kind, choice.sharing, choice.ffn_dim, n))
    return space.validate(Architecture(tuple(layers))), records, matrices


def write_heads(out: Path, arch: Architecture, records: list[dict], matrices: dict, eta: float) -> None:
    """heads/heads.json, heads/cka.npz and heads/arch.json, atomically."""
    from elasticlm.io import atomic_file

    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "cka.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **matrices)
    with atomic_file(out / "heads.json") as tmp:
        tmp.write_text(json.dumps({"eta": eta, "layers": records}, indent=1) + "\n")
    with atomic_file(out / "arch.json") as tmp:
        tmp.write_text(arch.to_json(indent=1) + "\n")

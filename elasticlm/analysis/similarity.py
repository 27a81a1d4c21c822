"""How alike a layer's candidate blocks are (the report's "block similarity" figure; docs: README,
"Ablations").

For layer l, every candidate block (kind × sharing, at its current FFN width and all heads) is run on
the *same* input x: the output of a shared prefix path through layers 0..l-1. What each block adds,
block(x) − x at the real (unpadded) tokens, is compared pairwise by linear CKA, and the k×k matrix is
averaged over a few seeded prefix paths. (The outputs themselves are useless here: a residual block's
output is dominated by its input, so every pair of outputs has CKA ≈ 1.) Distilling with correlation
(relational) losses is meant to leave the blocks more unlike each other than KL/MSE does, which
pushes every block towards the same teacher features;
`elasticlm ablate` writes this matrix for its `full` and `classic-kd` supernets.
"""

from __future__ import annotations

import random
from typing import Iterable

import numpy as np
import torch

from elasticlm.analysis.cka import cka_matrix
from elasticlm.models.blocks import additive_mask, compute_dtype
from elasticlm.models.encoder import run_encoder, use_eager


@torch.no_grad()
def block_similarity(net, batches: Iterable[dict[str, torch.Tensor]], layer: int, *, seed: int = 0,
                     prefixes: int = 3) -> dict:
    """{"layer", "blocks": ["bert/none", ...], "matrix": k×k mean linear CKA, "tokens": n, "prefixes"}.

    net: a SuperNet; batches: dicts with input_ids / attention_mask (/ token_type_ids), B×N each.
    """
    space = net.space
    if not 0 <= layer < space.num_layers:
        raise ValueError(f"layer {layer} is outside 0..{space.num_layers - 1}")
    batches = list(batches)
    cands = list(space.candidates)
    widths = net.widths()
    was_training = net.training
    net.eval()
    eager = use_eager(net.config.attention_backend, net)
    mats = []
    for p in range(prefixes):
        base = space.sample(random.Random(f"{seed}:similarity:{p}"), widths)
        reps: list[list[torch.Tensor]] = [[] for _ in cands]
        for batch in batches:
            real = batch["attention_mask"].bool()  # B×N
            x = _prefix(net, batch, base[:layer], eager)  # B×N×d, run once for every candidate
            mask = additive_mask(batch["attention_mask"], x.shape[1], causal=False, dtype=compute_dtype(x),
                                 device=x.device)
            x_real = x[real].double()  # tokens×d
            for i, (kind, sharing) in enumerate(cands):
                block = net.block(layer, kind, sharing)
                y, _ = block(x, mask, heads=space.num_heads, ffn_dim=widths[(layer, kind, sharing)], eager=eager)
                reps[i].append(y[real].double() - x_real)  # what the block adds
        mats.append(cka_matrix([torch.cat(r) for r in reps]))
    net.train(was_training)
    n = int(sum(int(b["attention_mask"].sum()) for b in batches))
    return {"layer": layer, "blocks": [f"{k}/{s}" for k, s in cands],
            "matrix": np.mean(mats, axis=0).round(4).tolist(), "tokens": n, "prefixes": prefixes}


def _prefix(net, batch: dict[str, torch.Tensor], layers, eager: bool) -> torch.Tensor:
    """The output of the partial path `layers` (LayerChoices of layers 0..len-1; the embeddings'
    output when empty): B×N×d."""
    blocks = [net.block(l, c.kind, c.sharing) for l, c in enumerate(layers)]
    out = run_encoder(net.embeddings, blocks, batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch.get("token_type_ids"), heads=[c.heads for c in layers],
                      ffn_dims=[c.ffn_dim for c in layers], eager=eager)
    return out.last_hidden_state

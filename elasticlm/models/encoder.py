"""The forward pass shared by the supernet and the standalone model: embeddings, mask, blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from elasticlm.models.blocks import NOTHING, Block, Capture, Embeddings, additive_mask, compute_dtype


@dataclass
class EncoderOutput:
    """What a forward pass returns; the tuples are filled only for what `Capture` asked for."""

    last_hidden_state: torch.Tensor  # B×N×d
    hidden_states: tuple[torch.Tensor, ...] | None = None  # (embedding output, block 1..L output), B×N×d
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer B×H×N×N
    head_contexts: tuple[torch.Tensor, ...] | None = None  # per layer B×H×N×hd
    ffn_hiddens: tuple[torch.Tensor, ...] | None = None  # per layer B×N×f (mobile: n_ffn×B×N×f)


def use_eager(backend: str, module: torch.nn.Module) -> bool:
    """'eager' / 'sdpa' as asked; 'auto' = eager when training (SDPA's backward is ~2x slower
    under CPU bf16 autocast), SDPA for inference."""
    if backend == "auto":
        return module.training and torch.is_grad_enabled()
    return backend == "eager"


def run_encoder(
    embeddings: Embeddings,
    blocks: Sequence[Block],
    input_ids: torch.Tensor | None,
    *,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    heads: Sequence[int | None] | None = None,
    ffn_dims: Sequence[int | None] | None = None,
    causal: bool = False,
    eager: bool = False,
    capture: Capture = NOTHING,
    checkpoint=None,
) -> EncoderOutput:
    """Embed, then run `blocks` in order; `heads[l]` / `ffn_dims[l]` override block l's own.
    `checkpoint(fn, x)` (e.g. transformers' gradient-checkpointing function) recomputes each block
    in the backward pass instead of keeping its activations (only when nothing is captured)."""
    x = embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # B×N×d
    mask = additive_mask(attention_mask, x.shape[1], causal=causal, dtype=compute_dtype(x), device=x.device)
    outs = [x] if capture.block_output else None
    attns, ctxs, ffns = ([] if flag else None for flag in (capture.attn_probs, capture.head_context, capture.ffn_hidden))
    for l, block in enumerate(blocks):
        h, f = heads[l] if heads else None, ffn_dims[l] if ffn_dims else None
        if checkpoint is not None and not capture.any:
            x, trace = checkpoint(lambda x, b=block, h=h, f=f: b(x, mask, heads=h, ffn_dim=f, eager=eager)[0], x), None
        else:
            x, trace = block(x, mask, heads=h, ffn_dim=f, eager=eager, capture=capture)
        if trace is not None:
            for store, value in ((attns, trace.attn_probs), (ctxs, trace.head_context), (ffns, trace.ffn_hidden)):
                if store is not None:
                    store.append(value)
        if outs is not None:
            outs.append(x)
    as_tuple = lambda xs: tuple(xs) if xs is not None else None  # noqa: E731
    return EncoderOutput(x, as_tuple(outs), as_tuple(attns), as_tuple(ctxs), as_tuple(ffns))

"""The building blocks of every elasticlm model, readable top to bottom.

    Embeddings   factorized: (token + position + segment) in e dims -> LayerNorm -> Linear(e, d)
    Attention    Q, K, [V], O projections at width w; sharing "qv" uses Q as V, "kv" uses K as V
    FFN          Linear(w, f) -> GELU -> Linear(f, w); can run a prefix f' <= f of its hidden units
                 and can grow f in a function-preserving way (new units have zero output weights)
    BertBlock    post-LN: x = LN(x + O·Attn(x)); x = LN(x + FFN(x))                      (w = d)
    MobileBlock  b = LN(Linear(d, i)(x)); a = LN(b + O·Attn(b)); a = LN(a + FFN_k(a)) for each of
                 n_ffn FFNs; x = LN(x + Linear(i, d)(a))                                  (w = i = d/4)

Both the supernet (all 6·L candidates) and the standalone / HuggingFace models are made of these
same modules, so a subnet extracted from the supernet computes exactly what the supernet computes on
that path.

Decoders run with a key/value cache: attention takes any object with transformers' `Cache.update(k,
v, layer_idx) -> (all keys, all values)` (e.g. `DynamicCache`), stores the new tokens' keys and values
(for sharing "qv" the values are the queries, for "kv" the keys) and attends over everything cached.

Blocks can hand back, on request only, what distillation, PCA and CKA need (`Capture`): attention
probabilities, each head's context output, FFN hidden activations (after GELU) and the block output.
When nothing is requested nothing extra is computed or kept.

Shapes: B batch, N sequence length, d hidden size, w attention width, H heads, hd = w / H,
f FFN hidden width, e embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elasticlm.errors import ElasticLMError
from elasticlm.space import SHARINGS, block_kind



@dataclass(frozen=True)
class Capture:
    """What a forward pass should hand back besides the last hidden state."""

    attn_probs: bool = False
    """Attention probabilities, B×H×N×N per layer (forces the eager attention path)."""
    head_context: bool = False
    """Each head's context output (probabilities @ V) before heads are merged, B×H×N×hd."""
    ffn_hidden: bool = False
    """FFN hidden activations after GELU, B×N×f (mobile: n_ffn×B×N×f)."""
    block_output: bool = False
    """Each block's output, B×N×d (plus the embedding output in front)."""

    @property
    def any(self) -> bool:
        return self.attn_probs or self.head_context or self.ffn_hidden or self.block_output


NOTHING = Capture()


@dataclass
class BlockTrace:
    """What one block captured (fields left None when not requested)."""

    attn_probs: torch.Tensor | None = None  # B×H×N×N
    head_context: torch.Tensor | None = None  # B×H×N×hd
    ffn_hidden: torch.Tensor | None = None  # B×N×f, or n_ffn×B×N×f for mobile blocks


def init_weights(module: nn.Module, std: float) -> None:
    """BERT initialisation: N(0, std) weights, zero biases and padding row, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Embeddings(nn.Module):
    """Factorized embeddings: V×e tokens + N_max×e positions + 2×e segments -> LN(e) -> Linear(e, d)."""

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, max_positions: int,
                 type_vocab_size: int = 2, eps: float = 1e-12, dropout: float = 0.0, pad_token_id: int | None = 0):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(max_positions, embedding_size)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, embedding_size)
        self.norm = nn.LayerNorm(embedding_size, eps=eps)
        self.project = nn.Linear(embedding_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # B×N×e
        n = x.shape[1]
        if n > self.position_embeddings.num_embeddings:
            raise ElasticLMError(f"sequence length {n} exceeds max_position_embeddings "
                             f"{self.position_embeddings.num_embeddings}; truncate the input")
        if position_ids is None:
            x = x + self.position_embeddings.weight[:n]  # broadcast over B
        else:
            x = x + self.position_embeddings(position_ids)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return drop(self.dropout, self.project(self.norm(x)))  # B×N×d


def drop(dropout: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    """`dropout(x)`, skipping the module call where it is the identity (eval mode or p = 0): the
    generation step runs ~10 of them per token."""
    return dropout(x) if dropout.training and dropout.p > 0 else x


class Attention(nn.Module):
    """Multi-head self-attention at width w with optional Q=V or K=V weight sharing.

    The head count is a forward-time argument: the projections are w×w whatever H is, so changing
    a block's heads (head-number search) changes no parameter.
    """

    def __init__(self, width: int, sharing: str = "none", dropout: float = 0.0):
        super().__init__()
        if sharing not in SHARINGS:
            raise ElasticLMError(f"sharing must be one of {SHARINGS}, got {sharing!r}")
        self.width, self.sharing, self.dropout_p = width, sharing, dropout
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width) if sharing == "none" else None
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, heads: int, *, eager: bool,
                trace: BlockTrace | None = None, capture: Capture = NOTHING, cache=None,
                layer_idx: int = 0) -> torch.Tensor:
        # x: B×N×w; mask: additive, B×1×1×N (padding) or B×1×N×T (causal; T = cached + N keys),
        # in x's compute dtype; cache: a transformers Cache (or None), this layer's slot is layer_idx
        B, N, w = x.shape
        hd = w // heads
        q = self.query(x).view(B, N, heads, hd).transpose(1, 2)  # B×H×N×hd
        k = self.key(x).view(B, N, heads, hd).transpose(1, 2)
        v = q if self.sharing == "qv" else k if self.sharing == "kv" else \
            self.value(x).view(B, N, heads, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)  # B×H×T×hd, the past tokens' keys/values in front
        p = self.dropout_p if self.training else 0.0
        if eager or capture.attn_probs:
            scores = torch.matmul(q * (hd ** -0.5), k.transpose(-1, -2))  # B×H×N×T (scaled on the smaller side)
            if mask is not None:
                scores = scores + mask
            probs = torch.softmax(scores, dim=-1)
            if trace is not None and capture.attn_probs:
                trace.attn_probs = probs
            ctx = torch.matmul(F.dropout(probs, p, self.training) if p else probs, v)  # B×H×N×hd (T summed)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        if trace is not None and capture.head_context:
            trace.head_context = ctx
        return self.out(ctx.transpose(1, 2).reshape(B, N, w))  # B×N×w


class FFN(nn.Module):
    """Linear(w, f) -> GELU -> Linear(f, w), runnable at a prefix of its hidden units, growable."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc_in = nn.Linear(width, hidden)
        self.fc_out = nn.Linear(hidden, width)

    @property
    def hidden(self) -> int:
        return self.fc_in.out_features

    def forward(self, x: torch.Tensor, ffn_dim: int | None = None, keep: list | None = None) -> torch.Tensor:
        # x: B×N×w -> B×N×w; ffn_dim < hidden runs the first ffn_dim hidden units only
        if ffn_dim is None or ffn_dim == self.fc_in.out_features:
            h = F.gelu(self.fc_in(x))  # B×N×f
            out = self.fc_out(h)
        else:
            h = F.gelu(F.linear(x, self.fc_in.weight[:ffn_dim], self.fc_in.bias[:ffn_dim]))
            out = F.linear(h, self.fc_out.weight[:, :ffn_dim], self.fc_out.bias)
        if keep is not None:
            keep.append(h)
        return out

    @torch.no_grad()
    def grow(self, new_hidden: int, std: float, generator: torch.Generator | None = None) -> list[tuple]:
        """Widen to `new_hidden` units without changing the output: new input rows ~ N(0, std),
        new input biases 0, new output columns 0. Returns [(old_param, new_param, dim)] so an
        optimizer's state can be carried over (`elasticlm.models.growth.carry_optimizer_state`)."""
        old = self.hidden
        if new_hidden < old:
            raise ElasticLMError(f"FFN can only grow: {old} -> {new_hidden}")
        if new_hidden == old:
            return []
        add = new_hidden - old
        w_in, b_in, w_out = self.fc_in.weight, self.fc_in.bias, self.fc_out.weight
        gen_device = generator.device if generator is not None else w_in.device
        fresh = torch.empty(add, w_in.shape[1], dtype=w_in.dtype, device=gen_device)
        fresh = fresh.normal_(0.0, std, generator=generator).to(w_in.device)  # a CPU generator grows GPU blocks too
        new_w_in = nn.Parameter(torch.cat([w_in.detach(), fresh], dim=0), requires_grad=w_in.requires_grad)
        new_b_in = nn.Parameter(torch.cat([b_in.detach(), b_in.new_zeros(add)]), requires_grad=b_in.requires_grad)
        new_w_out = nn.Parameter(torch.cat([w_out.detach(), w_out.new_zeros(w_out.shape[0], add)], dim=1),
                                 requires_grad=w_out.requires_grad)
        self.fc_in.weight, self.fc_in.bias, self.fc_out.weight = new_w_in, new_b_in, new_w_out
        self.fc_in.out_features = self.fc_out.in_features = new_hidden
        return [(w_in, new_w_in, 0), (b_in, new_b_in, 0), (w_out, new_w_out, 1)]


class _SharedAttentionBlock(nn.Module):
    """What every block kind has: an `attention` module whose projection sharing names the candidate."""

    @property
    def sharing(self) -> str:
        return self.attention.sharing


class BertBlock(_SharedAttentionBlock):
    """Post-LN BERT layer at width d: x = LN(x + O·Attn(x)); x = LN(x + FFN(x))."""

    kind = "bert"

    @classmethod
    def build(cls, sharing: str, ffn_dim: int, heads: int, *, hidden_size: int, inner_size: int, n_ffn: int,
              eps: float, dropout: float, attn_dropout: float) -> "BertBlock":
        """The block at the space's dimensions (`make_block`'s arguments; inner_size and n_ffn unused)."""
        return cls(hidden_size, ffn_dim, heads, sharing, eps, dropout, attn_dropout)

    def __init__(self, hidden_size: int, ffn_dim: int, heads: int, sharing: str = "none",
                 eps: float = 1e-12, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.attention = Attention(hidden_size, sharing, attn_dropout)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.ffn = FFN(hidden_size, ffn_dim)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    @property
    def ffn_dim(self) -> int:
        return self.ffn.hidden

    def ffns(self) -> list[FFN]:
        return [self.ffn]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *, heads: int | None = None,
                ffn_dim: int | None = None, eager: bool = False, capture: Capture = NOTHING, cache=None,
                layer_idx: int = 0):
        """x: B×N×d -> (B×N×d, BlockTrace or None); `cache`/`layer_idx`: see `Attention`."""
        trace = BlockTrace() if capture.any else None
        a = self.attention(x, mask, heads or self.heads, eager=eager, trace=trace, capture=capture,
                           cache=cache, layer_idx=layer_idx)
        x = self.attn_norm(x + drop(self.dropout, a))
        keep = [] if capture.ffn_hidden else None
        x = self.ffn_norm(x + drop(self.dropout, self.ffn(x, ffn_dim, keep)))
        if keep:
            trace.ffn_hidden = keep[0]
        return x, trace


class MobileBlock(_SharedAttentionBlock):
    """MobileBERT-style bottleneck block: attention and n_ffn FFNs at the inner width i = d/4."""

    kind = "mobile"

    @classmethod
    def build(cls, sharing: str, ffn_dim: int, heads: int, *, hidden_size: int, inner_size: int, n_ffn: int,
              eps: float, dropout: float, attn_dropout: float) -> "MobileBlock":
        """The block at the space's dimensions (`make_block`'s arguments)."""
        return cls(hidden_size, inner_size, ffn_dim, heads, sharing, n_ffn, eps, dropout, attn_dropout)

    def __init__(self, hidden_size: int, inner_size: int, ffn_dim: int, heads: int, sharing: str = "none",
                 n_ffn: int = 2, eps: float = 1e-12, dropout: float = 0.0, attn_dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.bottleneck_in = nn.Linear(hidden_size, inner_size)
        self.bottleneck_norm = nn.LayerNorm(inner_size, eps=eps)
        self.attention = Attention(inner_size, sharing, attn_dropout)
        self.attn_norm = nn.LayerNorm(inner_size, eps=eps)
        self.ffn = nn.ModuleList(FFN(inner_size, ffn_dim) for _ in range(n_ffn))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(inner_size, eps=eps) for _ in range(n_ffn))
        self.bottleneck_out = nn.Linear(inner_size, hidden_size)
        self.out_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    @property
    def ffn_dim(self) -> int:
        return self.ffn[0].hidden

    def ffns(self) -> list[FFN]:
        return list(self.ffn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, *, heads: int | None = None,
                ffn_dim: int | None = None, eager: bool = False, capture: Capture = NOTHING, cache=None,
                layer_idx: int = 0):
        """x: B×N×d -> (B×N×d, BlockTrace or None); `cache`/`layer_idx`: see `Attention`."""
        trace = BlockTrace() if capture.any else None
        b = self.bottleneck_norm(self.bottleneck_in(x))  # B×N×i
        a = self.attn_norm(b + drop(self.dropout, self.attention(b, mask, heads or self.heads, eager=eager,
                                                           trace=trace, capture=capture, cache=cache,
                                                           layer_idx=layer_idx)))
        keep = [] if capture.ffn_hidden else None
        for ffn, norm in zip(self.ffn, self.ffn_norms):
            a = norm(a + drop(self.dropout, ffn(a, ffn_dim, keep)))  # B×N×i
        x = self.out_norm(x + drop(self.dropout, self.bottleneck_out(a)))  # B×N×d
        if keep:
            trace.ffn_hidden = torch.stack(keep)  # n_ffn×B×N×f
        return x, trace


Block = BertBlock | MobileBlock

BLOCKS: dict[str, type[Block]] = {cls.kind: cls for cls in (BertBlock, MobileBlock)}
"""The torch modules of every block kind, by the kind's name in `elasticlm.space.BLOCK_KINDS`. A Block
class has `kind`, `build(...)` (as `make_block` calls it), `heads`, `sharing`, `ffn_dim`, `ffns()` (its
FFNs, named as the kind's `ffn_names`) and `forward(x, mask, ...) -> (B×N×d, BlockTrace | None)`."""


def block_class(kind: str) -> type[Block]:
    """The Block class of `kind`; an error names the known kinds when it has no spec or no modules."""
    spec = block_kind(kind)  # unknown to the space: an error naming the known kinds
    if spec.name not in BLOCKS:
        raise ElasticLMError(f"block kind {kind!r} has no modules: register a Block class in "
                             f"elasticlm.models.blocks.BLOCKS (kinds with modules: {', '.join(BLOCKS)})")
    return BLOCKS[spec.name]


def make_block(kind: str, sharing: str, ffn_dim: int, heads: int, *, hidden_size: int, inner_size: int,
               n_ffn: int = 2, eps: float = 1e-12, dropout: float = 0.0, attn_dropout: float = 0.0) -> Block:
    """Build one candidate block of a registered kind."""
    return block_class(kind).build(sharing, ffn_dim, heads, hidden_size=hidden_size, inner_size=inner_size,
                                   n_ffn=n_ffn, eps=eps, dropout=dropout, attn_dropout=attn_dropout)


def block_state_for(block: Block, ffn_dim: int) -> dict[str, torch.Tensor]:
    """The block's state dict with every FFN cut to its first `ffn_dim` hidden units (what a
    standalone block of width `ffn_dim` loads). Tensors are copies."""
    if ffn_dim > block.ffn_dim:
        raise ElasticLMError(f"block FFN has {block.ffn_dim} units, cannot extract {ffn_dim}")
    out = {}
    for name, t in block.state_dict().items():
        if ".fc_in." in name:  # ffn.fc_in.* / ffn.<k>.fc_in.*: keep the first ffn_dim units
            t = t[:ffn_dim]
        elif name.endswith("fc_out.weight"):
            t = t[:, :ffn_dim]
        out[name] = t.detach().clone()
    return out


def additive_mask(attention_mask: torch.Tensor | None, n: int, *, causal: bool, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor | None:
    """Turn a B×N 1/0 padding mask (and/or causality) into an additive mask.

    Returns None when there is neither a mask nor causality; else B×1×1×N (padding) or B×1×N×N
    (causal), with 0 where attention is allowed and the dtype's minimum elsewhere. The result never
    depends on the mask's values in Python (no `.all()` shortcut), so a traced, exported or compiled
    graph keeps its padding input and never syncs on it.
    """
    neg = torch.finfo(dtype).min
    mask = None
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            raise ElasticLMError(f"attention_mask must be B×N (1 = token, 0 = padding), got shape {tuple(attention_mask.shape)}")
        keep = attention_mask[:, None, None, :].to(torch.bool)  # B×1×1×N
        mask = torch.zeros(keep.shape, dtype=dtype, device=device).masked_fill(~keep, neg)
    if causal:
        future = torch.ones(n, n, dtype=torch.bool, device=device).triu(1)  # N×N, True above the diagonal
        c = torch.zeros(n, n, dtype=dtype, device=device).masked_fill(future, neg)[None, None]  # 1×1×N×N
        mask = c if mask is None else (mask + c).clamp(min=neg)
    return mask


def decoder_mask(attention_mask: torch.Tensor | None, past: int, n: int, *, dtype: torch.dtype,
                 device: torch.device) -> torch.Tensor | None:
    """The additive mask of `n` new tokens that follow `past` cached ones: query i (at position
    past + i) sees keys 0..past + i that are not padding. attention_mask: B×(past + n) 1/0 or None.

    Returns None when nothing needs masking (one new token and no padding: the decoding step), else
    B×1×n×(past + n) (1×1×n×(past + n) without padding) with 0 = allowed, the dtype's minimum elsewhere.
    """
    t = past + n
    if attention_mask is not None and attention_mask.shape[-1] != t:
        raise ElasticLMError(f"attention_mask covers {attention_mask.shape[-1]} positions, but there are "
                             f"{past} cached and {n} new tokens; pass the mask of the whole sequence")
    padded = attention_mask is not None and not bool(attention_mask.all())
    if n == 1 and not padded:
        return None
    neg = torch.finfo(dtype).min
    keys = torch.arange(t, device=device)
    future = keys[None, :] > (keys[past:])[:, None]  # n×T, True where the key comes after the query
    blocked = future[None, None]  # 1×1×n×T
    if padded:
        blocked = blocked | ~attention_mask[:, None, None, :].to(torch.bool)  # B×1×n×T
    return torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, neg)


def compute_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype activations will have inside the blocks (autocast's, when active)."""
    dev = reference.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return reference.dtype

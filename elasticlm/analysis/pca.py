"""PCA scores of FFN blocks, and which blocks a growth round widens.

A block's FFN uses its width well when its hidden activations (after GELU) spread over many
directions. We run a fixed probe set of real tokens through the block, centre the activations
(tokens × f, padding left out) and count k, the fewest principal components that explain τ = 0.99 of
the variance. The score is k / f ("ratio": the share of its width the block really uses) or k
("count"). A block that needs nearly all its width scores ~1 and is a candidate to grow; one whose
activations live in a few directions scores low; one whose activations never vary scores 0. A mobile
block's stacked FFNs grow together, so its score is the mean of its FFNs' scores.

Every growth round scores every block afresh on the probe, whether or not training ever sampled it:
for each candidate (kind, sharing) the path that uses it in every layer (each block at its current
width, all heads) runs the probe once in eval mode, fp32, without gradients, which scores all L
blocks of that candidate at once, so 6 passes score all 6·L blocks.

Activations are never kept: each FFN's rows are folded into running float64 sums Σx, Σxxᵀ and a token
count. The covariance Σxxᵀ/T − μμᵀ is the centred activations' Gram matrix over T, so its
eigenvalues are the PCA spectrum (the squared singular values of the centred T×f matrix, over T).

A growth round then widens, by one grid step, the top-K growable blocks (width below 2d) by score,
ties going to the block listed first; once the mean width of all blocks reaches d it widens nothing.
How often rounds come and K follow from the steps pretraining has (`growth_schedule`): enough rounds
of K for the mean to go from d/4 to d, all before the last `settle` share of the steps.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import torch

from elasticlm.errors import ElasticLMError
from elasticlm.models.blocks import Capture
from elasticlm.space import Architecture, LayerChoice

MODES: tuple[str, ...] = ("ratio", "count")
BlockKey = tuple[int, str, str]  # (layer, kind, sharing)
K = TypeVar("K", bound=Hashable)


class Moments:
    """Running Σx (f), Σxxᵀ (f×f) and count of activation rows, in float64 on the rows' device."""

    def __init__(self, f: int):
        self.f = f
        self.sum: torch.Tensor | None = None  # f
        self.outer: torch.Tensor | None = None  # f×f
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """Fold in activation rows T×f."""
        rows = rows.detach()
        if rows.device.type == "mps":  # no float64 there
            rows = rows.cpu()
        x = rows.reshape(-1, self.f).to(torch.float64)  # T×f
        if self.sum is None:
            self.sum = x.new_zeros(self.f)
            self.outer = x.new_zeros(self.f, self.f)
        self.sum += x.sum(0)
        self.outer.addmm_(x.T, x)  # f×f
        self.count += x.shape[0]

    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of the centred covariance (f, largest first, ≥ 0), computed on the CPU."""
        if not self.count:
            return torch.zeros(self.f, dtype=torch.float64)
        mean = self.sum.cpu() / self.count  # f
        cov = self.outer.cpu() / self.count - torch.outer(mean, mean)  # f×f
        cov = (cov + cov.T) / 2
        return torch.linalg.eigvalsh(cov).flip(0).clamp(min=0)


def components(eigenvalues: torch.Tensor, tau: float) -> int:
    """The fewest leading components (eigenvalues sorted descending) whose variance reaches `tau`
    of the total; 0 when there is no variance at all."""
    total = float(eigenvalues.sum())
    if not total > 0:
        return 0
    cum = torch.cumsum(eigenvalues, 0) / total
    target = torch.tensor(tau * (1 - 1e-12), dtype=cum.dtype)  # rounding must not cost a component
    return min(int(torch.searchsorted(cum, target).item()) + 1, eigenvalues.numel())


def _check(tau: float, mode: str) -> None:
    if not 0 < tau <= 1:
        raise ElasticLMError(f"PCA tau must be in (0, 1], got {tau!r}")
    if mode not in MODES:
        raise ElasticLMError(f"PCA score mode must be one of {', '.join(MODES)}, got {mode!r}")


def _count_components(m: Moments, tau: float) -> int:
    if m.count < 2 * m.f:
        raise ElasticLMError(f"the PCA probe has {m.count} real tokens for an FFN of width {m.f}; it needs at "
                             f"least 2·f = {2 * m.f} (use a larger probe, e.g. growth.probe_blocks)")
    return components(m.eigenvalues(), tau)


def _score(ks: Sequence[int], f: int, mode: str) -> float:
    """Mean over a block's FFNs of k / f (ratio) or k (count)."""
    return sum(k / f if mode == "ratio" else float(k) for k in ks) / len(ks)


def _rows(acts: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Real-token rows T×f of one FFN's activations (T×f, or B×N×f with a B×N mask)."""
    if acts.dim() < 2:
        raise ElasticLMError(f"activations must be tokens × f, got shape {tuple(acts.shape)}")
    if mask is None:
        return acts.reshape(-1, acts.shape[-1])
    if tuple(mask.shape) != tuple(acts.shape[:-1]):
        raise ElasticLMError(f"mask shape {tuple(mask.shape)} does not match activations {tuple(acts.shape)} "
                             f"(expected {tuple(acts.shape[:-1])})")
    return acts[mask.to(device=acts.device, dtype=torch.bool)]


def pca_components(acts: torch.Tensor, tau: float = 0.99, mask: torch.Tensor | None = None) -> int:
    """k for one FFN's activations: T×f, or B×N×f with a B×N `mask` (1 = real token, 0 = padding;
    without a mask every row counts). Raises ElasticLMError with fewer than 2·f real tokens."""
    _check(tau, "ratio")
    m = Moments(acts.shape[-1])
    m.add(_rows(acts, mask))
    return _count_components(m, tau)


def pca_score(acts: torch.Tensor, tau: float = 0.99, mode: str = "ratio", mask: torch.Tensor | None = None) -> float:
    """Score of one block's activations.

    One FFN: T×f, or B×N×f with a B×N `mask`. Stacked FFNs (mobile): n_ffn×T×f, or n_ffn×B×N×f with a
    B×N mask; the score is the mean of the FFNs' scores. Without a mask a 3-D tensor is read as
    n_ffn×T×f (flatten an unpadded B×N×f to T×f first)."""
    _check(tau, mode)
    if acts.dim() < 2:
        raise ElasticLMError(f"activations must be tokens × f, got shape {tuple(acts.shape)}")
    stacked = acts.dim() >= 3 if mask is None else acts.dim() == mask.dim() + 2
    parts = list(acts) if stacked else [acts]
    return _score([pca_components(a, tau, mask) for a in parts], acts.shape[-1], mode)


@torch.no_grad()
def probe_scores(supernet, batches: Sequence[Mapping[str, torch.Tensor]], *, tau: float = 0.99,
                 mode: str = "ratio") -> dict[BlockKey, float]:
    """Score every block of `supernet` freshly on the probe `batches`.

    batches: dicts with input_ids and attention_mask (B×N; a missing mask means no padding) and
    optional token_type_ids; moved to the supernet's device. Per candidate, one pass of the probe
    along the path that uses it in every layer (current widths, all heads), in eval mode, fp32 and
    without gradients; every module's train/eval mode is restored afterwards. Returns
    {(layer, kind, sharing): score} in `supernet.blocks()` order."""
    _check(tau, mode)
    if not batches:
        raise ElasticLMError("the PCA probe is empty; give at least one batch of real tokens")
    space = supernet.space
    device = next(supernet.parameters()).device
    modes = [(m, m.training) for m in supernet.modules()]
    supernet.eval()
    scores: dict[BlockKey, float] = {}
    try:
        with torch.autocast(device.type, enabled=False):
            for kind, sharing in space.candidates:
                blocks = [supernet.block(l, kind, sharing) for l in range(space.num_layers)]
                arch = Architecture(tuple(LayerChoice(kind, sharing, b.ffn_dim, space.num_heads) for b in blocks))
                moments = [[Moments(b.ffn_dim) for _ in b.ffns()] for b in blocks]
                for i, batch in enumerate(batches):
                    if "input_ids" not in batch:
                        raise ElasticLMError(f"PCA probe batch {i} has no input_ids")
                    ids = batch["input_ids"].to(device)  # B×N
                    mask = batch.get("attention_mask")
                    mask = torch.ones_like(ids) if mask is None else mask.to(device)  # B×N
                    types = batch.get("token_type_ids")
                    out = supernet(ids, arch, attention_mask=mask,
                                   token_type_ids=None if types is None else types.to(device),
                                   capture=Capture(ffn_hidden=True))
                    real = mask.bool()  # B×N
                    for per_ffn, h in zip(moments, out.ffn_hiddens):  # h: B×N×f or n_ffn×B×N×f
                        for m, acts in zip(per_ffn, h if h.dim() == 4 else h.unsqueeze(0)):
                            m.add(acts[real])  # real tokens × f
                for l, per_ffn in enumerate(moments):
                    ks = [_count_components(m, tau) for m in per_ffn]
                    scores[(l, kind, sharing)] = _score(ks, blocks[l].ffn_dim, mode)
    finally:
        for m, was in modes:
            m.train(was)
    return {key: scores[key] for key, _ in supernet.blocks()}


def default_k(num_blocks: int, fraction: float = 0.29) -> int:
    """Blocks grown per round by default: round(fraction · number of blocks), at least 1
    (21 of the 72 blocks of a 12-layer, 6-candidate supernet)."""
    if num_blocks <= 0:
        raise ElasticLMError(f"growth needs at least one block, got {num_blocks}")
    if not 0 < fraction <= 1:
        raise ElasticLMError(f"growth fraction must be in (0, 1], got {fraction!r}")
    return max(1, round(fraction * num_blocks))


def growth_schedule(num_blocks: int, start_mean: float, target_mean: float, width_step: int, total_steps: int, *,
                    every: int | None = None, k: int | None = None, settle: float = 0.2) -> tuple[int, int]:
    """(every, K): steps between growth rounds and blocks widened per round, so that the mean FFN width
    goes from `start_mean` to `target_mean` (each round adds K·width_step/num_blocks to it) by a last
    round no later than step (1 − settle)·total_steps. A given `every` or `k` is kept and the other
    fitted to it; with neither, K = `default_k` and the rounds spread evenly over the growth span (K
    rises only when there are fewer steps than rounds). K never exceeds num_blocks."""
    if num_blocks <= 0 or width_step <= 0 or total_steps <= 0:
        raise ElasticLMError(f"a growth schedule needs blocks, a width step and steps, got {num_blocks}, "
                             f"{width_step}, {total_steps}")
    if not 0 <= settle < 1:
        raise ElasticLMError(f"growth settle share must be in [0, 1), got {settle!r}")
    if every is not None and k is not None:
        return every, k
    needed = max(0, math.ceil(num_blocks * (target_mean - start_mean) / width_step - 1e-9))  # block-steps
    span = max(1, math.floor(total_steps * (1 - settle)))  # the last round comes at or before this step
    if k is not None:
        return every or max(1, span // max(1, math.ceil(needed / k))), k
    if every is not None:
        rounds = max(1, span // every)
    else:
        rounds = min(span, max(1, math.ceil(needed / default_k(num_blocks))))
        every = span // rounds
    return every, min(num_blocks, max(default_k(num_blocks), math.ceil(needed / rounds)))


def select_growth(scores: Mapping[K, float], widths: Mapping[K, int], *, k: int, max_width: int,
                  target_mean: float) -> list[K]:
    """The blocks a growth round widens (by one grid step each; the caller grows them).

    [] once the mean of `widths` reaches `target_mean` (d). Otherwise the `k` highest-scoring blocks
    whose width is below `max_width` (2d), highest first; equal scores keep the order in which
    `widths` lists the blocks (NaN scores rank last). Fewer than k when fewer can grow."""
    if not widths or k <= 0:
        return []
    if sum(widths.values()) / len(widths) >= target_mean:
        return []
    growable = [key for key, w in widths.items() if w < max_width]
    missing = [key for key in growable if key not in scores]
    if missing:
        raise ElasticLMError(f"no PCA score for block {missing[0]!r} ({len(missing)} growable blocks unscored)")

    def rank(key: K) -> float:
        s = float(scores[key])
        return math.inf if math.isnan(s) else -s

    return sorted(growable, key=rank)[:k]  # sorted is stable: ties stay in `widths` order

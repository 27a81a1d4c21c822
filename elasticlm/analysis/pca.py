"""PCA scores of FFN blocks, and which blocks a growth round widens.

A block's FFN uses its width well when its hidden activations (after GELU) spread over many
directions. Run a fixed probe set of real tokens through the block, centre the activations
(tokens × f, padding left out), and count k, the principal components needed to explain τ = 0.99 of
the variance. The score is k / f ("ratio": the share of its width the block really uses) or k
("count"). A block that needs all its width scores ~1 and is a candidate to grow; one whose
activations live in a few directions scores low. Mobile blocks grow their stacked FFNs together,
so their score is the mean of their FFNs' scores.

Every round scores every block afresh on the probe set, whether or not training ever sampled it:
for each candidate (kind, sharing), the path that uses it in every layer runs the probe once, which
scores all L blocks of that candidate (6 passes score all 6·L blocks).

Activations are reduced on the fly to per-block sums Σx, Σxxᵀ and a token count (float64), so the
probe can be large; the centred covariance's eigenvalues are the PCA spectrum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from elasticlm.errors import ElasticLMError
from elasticlm.models.blocks import Capture

MODES = ("ratio", "count")


class Moments:
    """Running Σx (f), Σxxᵀ (f×f) and count of activation rows, in float64."""

    def __init__(self, f: int):
        self.sum = torch.zeros(f, dtype=torch.float64)
        self.outer = torch.zeros(f, f, dtype=torch.float64)
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        x = rows.detach().to(torch.float64).reshape(-1, rows.shape[-1])  # T×f
        self.sum += x.sum(0)
        self.outer += x.T @ x
        self.count += x.shape[0]

    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of the centred covariance, largest first."""
        mean = self.sum / max(self.count, 1)
        cov = self.outer / max(self.count, 1) - torch.outer(mean, mean)  # f×f
        return torch.linalg.eigvalsh(cov).flip(0).clamp(min=0)


def components(eigenvalues: torch.Tensor, tau: float) -> int:
    """The fewest leading components whose variance reaches `tau` of the total."""
    total = eigenvalues.sum()
    if total <= 0:
        return 0
    cum = torch.cumsum(eigenvalues, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(tau - 1e-12, dtype=cum.dtype)).item()) + 1


def _moments(acts: torch.Tensor, mask: torch.Tensor | None) -> Moments:
    f = acts.shape[-1]
    m = Moments(f)
    m.add(acts[mask.bool()] if mask is not None else acts.reshape(-1, f))
    return m


def _check_tokens(count: int, f: int) -> None:
    if count < 2 * f:
        raise ElasticLMError(f"the PCA probe has {count} real tokens for an FFN of width {f}; it needs at "
                             f"least 2·f = {2 * f} (raise growth.probe_blocks)")


def pca_components(acts: torch.Tensor, tau: float = 0.99, mask: torch.Tensor | None = None) -> int:
    """k for activations T×f (or B×N×f with a B×N mask of real tokens)."""
    m = _moments(acts, mask)
    _check_tokens(m.count, acts.shape[-1])
    return components(m.eigenvalues(), tau)


def pca_score(acts: torch.Tensor, tau: float = 0.99, mode: str = "ratio", mask: torch.Tensor | None = None) -> float:
    """Score of one block's activations: T×f / B×N×f (bert) or n_ffn×T×f / n_ffn×B×N×f (mobile: the
    mean of its FFNs' scores). With `mask` (B×N), only real tokens count."""
    if mode not in MODES:
        raise ElasticLMError(f"PCA score mode must be one of {', '.join(MODES)}, got {mode!r}")
    stacked = acts.dim() == (4 if mask is not None else 3)
    parts = list(acts) if stacked else [acts]
    f = acts.shape[-1]
    ks = [pca_components(a, tau, mask) for a in parts]
    return sum(k / f if mode == "ratio" else k for k in ks) / len(ks)


def _score_from(moments: list[Moments], f: int, tau: float, mode: str) -> float:
    ks = []
    for m in moments:
        _check_tokens(m.count, f)
        ks.append(components(m.eigenvalues(), tau))
    return sum(k / f if mode == "ratio" else k for k in ks) / len(ks)


@torch.no_grad()
def probe_scores(supernet, batches: Sequence[Mapping[str, torch.Tensor]], *, tau: float = 0.99,
                 mode: str = "ratio") -> dict[tuple[int, str, str], float]:
    """Score every block of `supernet` on the probe `batches` (dicts with input_ids, attention_mask
    B×N, optional token_type_ids). Runs in fp32, eval mode; the previous mode is restored."""
    from elasticlm.space import Architecture, LayerChoice

    if mode not in MODES:
        raise ElasticLMError(f"PCA score mode must be one of {', '.join(MODES)}, got {mode!r}")
    space = supernet.space
    was = supernet.training
    supernet.eval()
    scores = {}
    try:
        for kind, sharing in space.candidates:
            widths = [supernet.block(l, kind, sharing).ffn_dim for l in range(space.num_layers)]
            arch = Architecture(tuple(LayerChoice(kind, sharing, widths[l], space.num_heads)
                                      for l in range(space.num_layers)))
            moments = None
            for batch in batches:
                mask = batch["attention_mask"].bool()  # B×N
                out = supernet(batch["input_ids"], arch, attention_mask=batch["attention_mask"],
                               token_type_ids=batch.get("token_type_ids"),
                               capture=Capture(ffn_hidden=True))
                if moments is None:
                    moments = [[Moments(widths[l]) for _ in range(h.shape[0] if h.dim() == 4 else 1)]
                               for l, h in enumerate(out.ffn_hiddens)]
                for l, h in enumerate(out.ffn_hiddens):
                    for m, acts in zip(moments[l], h if h.dim() == 4 else [h]):
                        m.add(acts[mask])  # real tokens × f
            for l in range(space.num_layers):
                scores[(l, kind, sharing)] = _score_from(moments[l], widths[l], tau, mode)
    finally:
        supernet.train(was)
    return {key: scores[key] for key, _ in supernet.blocks()}


def default_k(num_blocks: int, fraction: float = 0.29) -> int:
    """Blocks grown per round by default: round(0.29 · number of blocks), at least 1."""
    return max(1, round(fraction * num_blocks))


def select_growth(scores: Mapping, widths: Mapping, *, k: int, max_width: int, target_mean: float) -> list:
    """The blocks a growth round widens: [] once the mean width reaches `target_mean`; else the top
    `k` by score among blocks below `max_width` (ties in the order `widths` lists them)."""
    if sum(widths.values()) / len(widths) >= target_mean:
        return []
    order = {key: i for i, key in enumerate(widths)}
    growable = [key for key, w in widths.items() if w < max_width]
    growable.sort(key=lambda key: (-scores[key], order[key]))
    return growable[:k]

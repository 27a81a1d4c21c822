"""The learned maps from student block outputs to the teacher's hidden width (the hidden loss's
projections), per layer or per candidate block of a supernet layer."""

from __future__ import annotations

import torch
from torch import nn

from elasticlm.errors import ElasticLMError

__all__ = ["PROJECTIONS", "HiddenProjection", "supernet_projection"]

PROJECTIONS = ("block", "layer")


class HiddenProjection(nn.Module):
    """Learned Linear(d, d_t) maps from student block outputs to the teacher's width, for the hidden
    loss: one per student layer, or, given `candidates` ((kind, sharing) pairs), one per candidate
    block of each layer (layer-major, candidates in the order given: `layers[l·C + c]`), so that the
    candidates of a layer are not pulled toward one shared representation. BERT-style init (weights
    N(0, std²), zero bias), drawn in that order from `generator` when given. Lives in the trainer's
    checkpoint, never in an extracted model."""

    def __init__(self, num_layers: int, hidden_size: int, teacher_hidden_size: int, std: float = 0.02,
                 generator: torch.Generator | None = None, *, candidates: list[tuple[str, str]] | None = None):
        super().__init__()
        if num_layers < 1 or hidden_size < 1 or teacher_hidden_size < 1:
            raise ElasticLMError(f"HiddenProjection needs positive sizes, got layers={num_layers}, "
                                 f"d={hidden_size}, d_t={teacher_hidden_size}")
        self.candidates = [tuple(c) for c in candidates] if candidates else None
        n = num_layers * len(self.candidates) if self.candidates else num_layers
        self.layers = nn.ModuleList(nn.Linear(hidden_size, teacher_hidden_size) for _ in range(n))
        with torch.no_grad():
            for lin in self.layers:
                lin.weight.normal_(0.0, std, generator=generator)
                lin.bias.zero_()

    def index(self, layer: int, block: tuple[str, str] | None = None) -> int:
        """Position in `layers` of the projection of `layer` (0-based) and, per block, of the candidate
        `block` = (kind, sharing) there; per layer, `block` is ignored."""
        if self.candidates is None:
            return layer
        if block is None or tuple(block) not in self.candidates:
            raise ElasticLMError(f"HiddenProjection per block: layer {layer} needs one of the candidates "
                                 f"{self.candidates}, got {block!r}")
        return layer * len(self.candidates) + self.candidates.index(tuple(block))

    def forward(self, layer: int, h: torch.Tensor, block: tuple[str, str] | None = None) -> torch.Tensor:
        """h: B×N×d -> B×N×d_t through the projection of `layer` (and of `block` when per block)."""
        return self.layers[self.index(layer, block)](h)


def supernet_projection(space, teacher_hidden_size: int, per: str, generator: torch.Generator | None = None
                        ) -> HiddenProjection:
    """The hidden projections of supernet training over `space`: per "block" (each candidate of each
    layer) or per "layer" (`DistillConfig.projection`)."""
    if per not in PROJECTIONS:
        raise ElasticLMError(f"distill.projection={per!r} must be one of {', '.join(PROJECTIONS)}")
    return HiddenProjection(space.num_layers, space.hidden_size, teacher_hidden_size, generator=generator,
                            candidates=list(space.candidates) if per == "block" else None)

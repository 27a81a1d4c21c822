"""Linear centred kernel alignment (CKA) between representations (docs: README, "Head search").

CKA(X, Y) = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F · ‖Yᵀ Y‖_F) for column-centred X (n×p) and Y (n×q) whose rows are the
same n examples. It is 1 for X = Y, invariant to orthogonal transforms and isotropic scaling of
either side, and 0 for representations whose features are uncorrelated. Computed in float64 from
the small p×q cross-products, so n (tokens) can be large.
"""

from __future__ import annotations

import numpy as np
import torch


def _centred(x) -> torch.Tensor:
    x = torch.as_tensor(x).double()
    if x.dim() != 2:
        raise ValueError(f"CKA takes n×p matrices, got shape {tuple(x.shape)}")
    return x - x.mean(0, keepdim=True)


def linear_cka(x, y) -> float:
    """Linear CKA of X (n×p) and Y (n×q); 0.0 when either is constant."""
    x, y = _centred(x), _centred(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same rows: {x.shape[0]} vs {y.shape[0]}")
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    nx, ny = torch.linalg.matrix_norm(x.T @ x), torch.linalg.matrix_norm(y.T @ y)
    if nx == 0 or ny == 0:
        return 0.0
    return float(cross / (nx * ny))


def cka_matrix(reps) -> np.ndarray:
    """Pairwise linear CKA of k representations (a sequence of n×p_i, or a k×n×p tensor): k×k."""
    cs = [_centred(r) for r in reps]
    grams = [c.T @ c for c in cs]
    norms = [torch.linalg.matrix_norm(g) for g in grams]
    k = len(cs)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            den = norms[i] * norms[j]
            v = 0.0 if den == 0 else float(torch.linalg.matrix_norm(cs[j].T @ cs[i]) ** 2 / den)
            out[i, j] = out[j, i] = v
        if norms[i] == 0:
            out[i, i] = 0.0
    return out

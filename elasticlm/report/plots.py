"""The report's training-side figures: FFN growth, PCA scores, head CKA, block similarity.

Figures are drawn on `matplotlib.figure.Figure` objects (the Agg canvas; pyplot and its global state
are never touched) and saved atomically. Every function takes plain data read from the run folder
and returns the PNG path it wrote.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from elasticlm.space import BLOCK_KINDS, SHARINGS

KIND_COLOURS = {name: kind.colours[1] for name, kind in BLOCK_KINDS.items()}
SHARE_TAGS = {"none": "-", "qv": "qv", "kv": "kv"}
# The candidate blocks of a layer in the space's order, with a line colour each (the kind's, by sharing).
CANDIDATE_STYLE = {(name, sharing): colour for name, kind in BLOCK_KINDS.items()
                   for sharing, colour in zip(SHARINGS, kind.colours)}
CANDIDATE_ORDER = {c: (i,) for i, c in enumerate(CANDIDATE_STYLE)}


def kind_letter(kind: Any) -> str:
    """A block kind's tag letter ("B"). The report draws what a run folder holds: a kind this version
    does not register shows its name's first letter (and the figures' grey)."""
    return BLOCK_KINDS[kind].letter if kind in BLOCK_KINDS else str(kind)[:1].upper()


def new_figure(width: float, height: float):
    """A Figure on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    """Write `fig` to `path` as PNG, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", bbox_inches="tight", pad_inches=0.15)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return path


def block_label(block: Sequence) -> str:
    """[layer, kind, sharing] -> "L0 Bqv"."""
    layer, kind, sharing = block
    return f"L{layer} {kind_letter(kind)}{SHARE_TAGS.get(sharing, sharing)}"


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def growth_matrix(lines: list[dict]) -> tuple[list[tuple], list[int], np.ndarray]:
    """(blocks, rounds, widths): widths[b, r] is block b's FFN width after round r (round 0: before the
    first growth round); NaN where a line does not list the block. A record without blocks (growth
    stopped: the mean width reached its target) is not a round and makes no column."""
    lines = [line for line in lines if line.get("blocks")]
    blocks: list[tuple] = []
    for line in lines:
        for rec in line.get("blocks", []):
            key = tuple(rec["block"])
            if key not in blocks:
                blocks.append(key)
    blocks.sort(key=lambda b: (int(b[0]), *CANDIDATE_ORDER.get((b[1], b[2]), (9, str(b)))))
    rounds = [0] + [int(line.get("round", i + 1)) for i, line in enumerate(lines)]
    widths = np.full((len(blocks), len(rounds)), np.nan)
    index = {b: i for i, b in enumerate(blocks)}
    for col, line in enumerate(lines, start=1):
        for rec in line.get("blocks", []):
            i = index[tuple(rec["block"])]
            widths[i, col] = rec.get("after", np.nan)
            if col == 1:
                widths[i, 0] = rec.get("before", np.nan)
    return blocks, rounds, widths



def plot_growth(lines: list[dict], path: Path) -> Path:
    """Paper Fig. 1: FFN width of every block (rows) after each growth round (columns), and the mean."""
    blocks, rounds, widths = growth_matrix(lines)
    height = min(18.0, 1.6 + 0.2 * len(blocks))
    fig = new_figure(4.0 + 0.45 * len(rounds) + 3.2, height)
    heat, mean = fig.subplots(1, 2, width_ratios=[1.0 + 0.12 * len(rounds), 1.0])
    im = heat.imshow(np.ma.masked_invalid(widths), aspect="auto", cmap="viridis", interpolation="nearest")
    heat.set_xticks(range(len(rounds)), [str(r) for r in rounds])
    heat.set_yticks(range(len(blocks)), [block_label(b) for b in blocks], fontsize=7 if len(blocks) > 30 else 8)
    heat.set_xlabel("growth round (0 = initial)")
    heat.set_title("FFN width per block")
    if widths.size <= 400:
        top = np.nanmax(widths) if np.isfinite(widths).any() else 0
        for (i, j), w in np.ndenumerate(widths):
            if np.isfinite(w):
                heat.text(j, i, f"{int(w)}", ha="center", va="center", fontsize=6,
                          color="white" if w < 0.6 * top else "black")
    fig.colorbar(im, ax=heat, label="FFN width", shrink=0.6)
    means = [float(np.nanmean(widths[:, j])) if np.isfinite(widths[:, j]).any() else np.nan
             for j in range(len(rounds))]
    mean.plot(rounds, means, marker="o", color="#333333", label="all blocks")
    for kind, colour in KIND_COLOURS.items():
        rows = [i for i, b in enumerate(blocks) if b[1] == kind]
        if rows:
            mean.plot(rounds, [float(np.nanmean(widths[rows, j])) for j in range(len(rounds))], marker=".",
                      color=colour, label=f"{kind} blocks")
    mean.set_xlabel("growth round")
    mean.set_ylabel("mean FFN width")
    mean.set_title("mean width")
    mean.legend(fontsize=8)
    mean.grid(alpha=0.3)
    return save(fig, path)


def plot_pca_scores(lines: list[dict], path: Path) -> Path:
    """Paper Fig. 2: per layer, the PCA score of each of its candidate blocks at every growth round
    (filled marker: the block grew that round)."""
    series: dict[int, dict[tuple, list[tuple[int, float, bool]]]] = {}
    for i, line in enumerate(lines):
        rnd = int(line.get("round", i + 1))
        for rec in line.get("blocks", []):
            layer, kind, sharing = rec["block"]
            grew = rec.get("after", 0) > rec.get("before", 0)
            series.setdefault(int(layer), {}).setdefault((kind, sharing), []).append((rnd, float(rec["score"]), grew))
    layers = sorted(series)
    rows, cols = _grid(len(layers))
    fig = new_figure(3.4 * cols + 1.6, 2.6 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    for ax, layer in zip(axes, layers):
        for cand, pts in sorted(series[layer].items(), key=lambda kv: CANDIDATE_ORDER.get(kv[0], (9,))):
            colour = CANDIDATE_STYLE.get(cand, "grey")
            xs, ys, grew = zip(*pts)
            ax.plot(xs, ys, color=colour, lw=1.2, label=f"{kind_letter(cand[0])}{SHARE_TAGS.get(cand[1], cand[1])}")
            ax.scatter(xs, ys, s=22, zorder=3, edgecolors=colour,
                       facecolors=[colour if g else "white" for g in grew])
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.set_xlabel("growth round")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    for ax in axes[::cols]:
        ax.set_ylabel("PCA score")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, title="block")
    fig.suptitle("PCA scores of the candidate blocks (filled: grown that round)", fontsize=11)
    return save(fig, path)


def _layer_index(name: str) -> int:
    digits = "".join(ch for ch in name if ch.isdigit())
    return int(digits) if digits else 0


def plot_cka_heads(matrices: dict[str, np.ndarray], heads: dict | None, path: Path) -> Path:
    """Paper Fig. 3a: per layer, the H×H linear CKA between head contexts; kept heads outlined in red."""
    from matplotlib.patches import Rectangle

    names = sorted(matrices, key=_layer_index)
    records = {int(r.get("layer", -1)): r for r in (heads or {}).get("layers", []) if isinstance(r, dict)}
    rows, cols = _grid(len(names))
    fig = new_figure(3.2 * cols + 1.0, 3.1 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    im = None
    for ax, name in zip(axes, names):
        m = np.asarray(matrices[name], dtype=float)
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        n = m.shape[0]
        ax.set_xticks(range(n), [str(h) for h in range(n)], fontsize=6)
        ax.set_yticks(range(n), [str(h) for h in range(n)], fontsize=6)
        rec = records.get(_layer_index(name))
        title = f"layer {_layer_index(name)}"
        if rec:
            kept = [int(k) for k in rec.get("kept", [])]
            for k in kept:
                if 0 <= k < n:
                    ax.add_patch(Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="#00e5ff", lw=1.8))
            for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
                for t in ticks:
                    if t.get_text().isdigit() and int(t.get_text()) in kept:
                        t.set_color("#d62728")
                        t.set_fontweight("bold")
            title += f" ({rec.get('kind', '?')}): {rec.get('heads_before', n)} → {rec.get('heads_after', '?')} heads"
        ax.set_title(title, fontsize=9)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=list(axes[:len(names)]), label="linear CKA", shrink=0.7)
    eta = (heads or {}).get("eta")
    fig.suptitle("CKA between attention heads" + (f" (kept heads boxed; η = {eta})" if eta is not None else ""),
                 fontsize=11)
    return save(fig, path)


def plot_similarity(data: dict[str, Any], path: Path) -> Path:
    """Paper Fig. 3b/6: CKA between the outputs of a layer's candidate blocks, one panel per
    distillation kind."""
    first = ("relational", "classic")
    kinds = [k for k in first if k in data] + [k for k in data if k not in first]
    fig = new_figure(4.2 * len(kinds) + 1.0, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)).ravel()
    im = None
    for ax, kind in zip(axes, kinds):
        m = np.asarray(data[kind]["matrix"], dtype=float)
        labels = [str(b) for b in data[kind].get("blocks", range(m.shape[0]))]
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
        ax.set_title(f"{kind} distillation\n(mean off-diagonal CKA {off_diagonal_mean(m):.2f})", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="linear CKA", shrink=0.8)
    return save(fig, path)


def off_diagonal_mean(m: np.ndarray) -> float:
    """Mean of the off-diagonal entries of a square matrix (NaN for 1×1)."""
    m = np.asarray(m, dtype=float)
    n = m.shape[0]
    if n < 2:
        return float("nan")
    return float((m.sum() - np.trace(m)) / (n * n - n))

"""The report's search-side figures: the found architecture (paper Fig. 5), search progress, and
parameters vs fitness with the Pareto front."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elasticlm.report.files import number
from elasticlm.report.plots import KIND_COLOURS, new_figure, save
from elasticlm.report.tables import params_text
from elasticlm.space import BLOCK_KINDS

SHARING_WORDS = {"none": "no sharing", "qv": "Q=V shared", "kv": "K=V shared"}
SHARING_HATCH = {"none": "", "qv": "//", "kv": "\\\\"}


def plot_architecture(layers: list[dict], path: Path, *, hidden_size: int | None = None) -> Path:
    """Paper Fig. 5: one box per layer (layer 0 at the bottom), as wide as its FFN (to scale), coloured by
    block kind, hatched by sharing, labelled with kind, sharing, FFN width and heads. A dashed outline
    marks the widest FFN the space allows (2d) when `hidden_size` is known."""
    from matplotlib.patches import Patch, Rectangle

    widths = [int(l["ffn_dim"]) for l in layers]
    limit = max([*widths, 2 * hidden_size if hidden_size else 0, 1])
    fig = new_figure(9.5, 1.0 + 0.62 * len(layers))
    ax = fig.subplots()
    for i, (layer, w) in enumerate(zip(layers, widths)):
        kind, sharing = layer.get("kind", "?"), layer.get("sharing", "none")
        if hidden_size:
            ax.add_patch(Rectangle((-hidden_size, i - 0.36), 2 * hidden_size, 0.72, fill=False, ls="--", lw=0.8,
                                   edgecolor="#999999"))
        ax.add_patch(Rectangle((-w / 2, i - 0.36), w, 0.72, facecolor=KIND_COLOURS.get(kind, "#999999"),
                               edgecolor="black", lw=1.0, hatch=SHARING_HATCH.get(sharing, "")))
        title = BLOCK_KINDS[kind].title if kind in BLOCK_KINDS else str(kind).capitalize()  # a kind this version lacks
        ax.text(limit / 2 + limit * 0.04, i, f"L{i}  {title}, "
                f"{SHARING_WORDS.get(sharing, sharing)}, FFN {w}, {layer.get('heads', '?')} heads",
                va="center", fontsize=9)
    ax.set_xlim(-limit / 2 - limit * 0.03, limit * 1.55)
    ax.set_ylim(-0.7, len(layers) - 0.3)
    ax.set_yticks(range(len(layers)), [f"layer {i}" for i in range(len(layers))])
    ax.set_xticks([])
    ax.set_xlabel("box width: the layer's FFN width, to scale" + (f" (dashed: the widest the space allows, "
                                                                  f"2d = {2 * hidden_size})" if hidden_size else ""))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [Patch(facecolor=c, edgecolor="black", label=k) for k, c in KIND_COLOURS.items()]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=h, label=SHARING_WORDS[s])
                for s, h in SHARING_HATCH.items()]
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=len(handles))
    ax.set_title("The found architecture, input at the bottom")
    return save(fig, path)


def plot_search_progress(lines: list[dict], path: Path, *, metric: str = "fitness") -> Path:
    """Best-so-far and population-mean fitness per generation (and distinct architectures scored)."""
    gens = [int(l.get("generation", i)) for i, l in enumerate(lines)]
    best = [number((l.get("best") or {}).get("fitness")) for l in lines]
    mean = [number(l.get("mean_fitness")) for l in lines]
    fig = new_figure(7.5, 4.2)
    ax = fig.subplots()
    ax.plot(gens, [np.nan if v is None else v for v in best], marker="o", color="#d62728", label="best so far")
    ax.plot(gens, [np.nan if v is None else v for v in mean], marker=".", color="#4C72B0",
            label="mean of the generation")
    ax.set_xlabel("generation (0 = initial population)")
    ax.set_ylabel(f"held-out {metric}")
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    evaluated = [number(l.get("evaluated")) for l in lines]
    if all(v is not None for v in evaluated):
        twin = ax.twinx()
        twin.plot(gens, evaluated, ls=":", color="#777777", label="architectures scored")
        twin.set_ylabel("distinct architectures scored", color="#777777")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower right")
    else:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Search progress")
    return save(fig, path)


def plot_pareto(points: list[dict], front: list[dict], path: Path, *, metric: str = "fitness",
                best: dict | None = None, ceiling: float | None = None) -> Path:
    """Every scored architecture (parameters vs fitness), the Pareto front as a step line, the chosen
    best as a star and the parameter ceiling as a dashed line."""
    fig = new_figure(7.5, 4.6)
    ax = fig.subplots()
    xs = [p["params"] / 1e6 for p in points]
    ys = [p["fitness"] for p in points]
    ax.scatter(xs, ys, s=14, color="#9aa5b1", alpha=0.7, label=f"scored ({len(points)})")
    if front:
        fx = [c["params"] / 1e6 for c in front]
        fy = [c["fitness"] for c in front]
        ax.step(fx, fy, where="post", color="#d62728", lw=1.5, label=f"Pareto front ({len(front)})")
        ax.scatter(fx, fy, s=26, color="#d62728", zorder=3)
    if best and number(best.get("params")) is not None and number(best.get("fitness")) is not None:
        ax.scatter([best["params"] / 1e6], [best["fitness"]], marker="*", s=220, color="#ffbf00", edgecolor="black",
                   zorder=4, label="found")
    if ceiling:
        ax.axvline(ceiling / 1e6, ls="--", color="#555555", lw=1, label=f"ceiling {params_text(ceiling)}")
    ax.set_xlabel("parameters (M, embeddings included)")
    ax.set_ylabel(f"held-out {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Parameters vs fitness")
    return save(fig, path)

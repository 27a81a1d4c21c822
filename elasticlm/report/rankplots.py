"""The report's rank-check part (`elasticlm rank-check`'s ranking.json): each supernet fitness against
the retrained metric, one panel per fitness, and Kendall's τ with its interval per fitness. Torch-free."""

from __future__ import annotations

from pathlib import Path

from elasticlm.report.files import number
from elasticlm.report.plots import new_figure, save

ROLE_COLOURS = {"found": "#d62728", "uniform-mobile": "#2ca02c", "drawn": "#4C72B0"}
FITNESS_WORDS = {"metric": "held-out metric", "agreement": "teacher agreement (−KL)"}


def fitness_words(name: str, ranking: dict) -> str:
    """A fitness as the report names it ("metric": the held-out main metric by name)."""
    if name == "metric" and isinstance(ranking.get("metric"), str):
        return f"held-out {ranking['metric']}"
    return FITNESS_WORDS.get(name, name)


def usable_archs(ranking: dict) -> list[dict]:
    """The architectures of ranking.json with a retrained mean (malformed entries left out)."""
    return [a for a in ranking.get("archs", []) if isinstance(a, dict) and isinstance(a.get("retrained"), dict)
            and number(a["retrained"].get("mean")) is not None]


def _interval(r: dict) -> str:
    ci = r.get("ci95") if isinstance(r.get("ci95"), list) and len(r["ci95"]) == 2 else [None, None]
    lo, hi = number(ci[0]), number(ci[1])
    return "–" if lo is None or hi is None else f"[{lo:+.2f}, {hi:+.2f}]"


def tau_table(ranking: dict) -> list[str]:
    """A markdown table: fitness, Kendall τ, its 95% interval, Spearman ρ (the run's fitness in bold)."""
    rows = ["| fitness | Kendall τ | 95% interval (bootstrap over architectures) | Spearman ρ |",
            "|---|---:|---:|---:|"]
    for name, r in (ranking.get("fitnesses") or {}).items():
        if not isinstance(r, dict):
            continue
        tau, rho = number(r.get("kendall_tau")), number(r.get("spearman"))
        label = fitness_words(name, ranking)
        label = f"**{label}**" if name == ranking.get("fitness") else label
        rows.append(f"| {label} | {'–' if tau is None else f'{tau:+.2f}'} | {_interval(r)} | "
                    f"{'–' if rho is None else f'{rho:+.2f}'} |")
    return rows


def plot_ranking(ranking: dict, path: Path) -> Path:
    """One panel per fitness: each architecture's fitness (x) against its retrained metric ×100 (y, mean
    with ± std over seeds as error bars), coloured by role, τ in the title."""
    archs = usable_archs(ranking)
    names = [n for n in (ranking.get("fitnesses") or {}) if any(number((a.get("fitnesses") or {}).get(n))
                                                               is not None for a in archs)]
    fig = new_figure(4.6 * max(1, len(names)), 4.2)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    metric = f"retrained {ranking.get('metric', 'metric')} on {ranking.get('split', 'test')} (×100)"
    for ax, name in zip(axes, names):
        for role, colour in ROLE_COLOURS.items():
            mine = [a for a in archs if a.get("role") == role and number(a["fitnesses"].get(name)) is not None]
            if not mine:
                continue
            ax.errorbar([a["fitnesses"][name] for a in mine], [100 * a["retrained"]["mean"] for a in mine],
                        yerr=[100 * (number(a["retrained"].get("std")) or 0.0) for a in mine], fmt="o" if
                        role == "drawn" else "*", ms=7 if role == "drawn" else 13, color=colour, ecolor=colour,
                        capsize=3, label=role, zorder=3 if role != "drawn" else 2)
        r = ranking["fitnesses"].get(name) or {}
        tau = number(r.get("kendall_tau"))
        ax.set_title(f"{fitness_words(name, ranking)}: τ = {'–' if tau is None else f'{tau:+.2f}'} {_interval(r)}",
                     fontsize=10)
        ax.set_xlabel(f"supernet fitness: {fitness_words(name, ranking)}")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return save(fig, path)

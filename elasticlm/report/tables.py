"""The report's tables and the sentences computed from them (never hard-coded): the results table
(paper Table II style) with where the found model wins and loses, the ablation table, the found
architecture and head search per layer, and what the run cost."""

from __future__ import annotations

from typing import Any

from elasticlm.report.files import number

# metrics.json rows in the order of the table: the found model, the equal-budget baselines, the teacher,
# then the trivial and classical baselines; any other model after them.
MODEL_ORDER: tuple[str, ...] = ("found", "uniform-bert", "uniform-mobile", "random-search", "teacher", "majority",
                                "tfidf-logreg")
SPLITS: tuple[str, ...] = ("dev", "test")


def md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> list[str]:
    """A Markdown table; `align` per column: "l" or "r"."""
    align = align or ["l"] * len(header)
    cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def params_text(params: Any) -> str:
    """A parameter count with its unit: 4.42M, 40.0k, 12."""
    p = number(params)
    if p is None:
        return "–"
    if p >= 1e6:
        return f"{p / 1e6:.2f}M"
    return f"{p / 1e3:.1f}k" if p >= 1e3 else f"{int(p)}"


def count(v: Any) -> str:
    n = number(v)
    return "–" if n is None else f"{int(n):,}"


def points(value: float) -> str:
    """A metric in 0–1 as points (×100)."""
    return f"{100 * value:.1f}"


def seconds(s: Any) -> str:
    v = number(s)
    if v is None:
        return "–"
    if v < 90:
        return f"{v:.1f} s"
    if v < 5400:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


def ordered_models(metrics: dict) -> list[str]:
    return [m for m in MODEL_ORDER if m in metrics] + sorted(m for m in metrics if m not in MODEL_ORDER)


def metric_names(metrics: dict) -> list[str]:
    """Every metric any model reports on dev or test, in first-seen order (the found model first)."""
    names: list[str] = []
    for model in ordered_models(metrics):
        for split in SPLITS:
            for k in (metrics[model].get(split) or {}):
                if k not in names:
                    names.append(k)
    return names


def main_metric(metrics: dict, preferred: str | None = None) -> str | None:
    """`preferred` (the run's search metric) when the found model reports it, else its first metric."""
    found = metrics.get("found") or {}
    own = [k for split in SPLITS for k in (found.get(split) or {})]
    if preferred and preferred in own:
        return preferred
    if own:
        return own[0]
    names = metric_names(metrics)
    return preferred if preferred in names else (names[0] if names else None)


def _value(entry: dict, split: str, metric: str) -> float | None:
    return number((entry.get(split) or {}).get(metric))


def _std(entry: dict, split: str, metric: str) -> float | None:
    return number(((entry.get("std") or {}).get(split) or {}).get(metric))


def results_table(metrics: dict) -> list[str]:
    """Rows = models, columns = params (M), latency (ms), then every split × metric (×100, ± std over seeds)."""
    names = metric_names(metrics)
    cols = [(split, m) for split in SPLITS for m in names
            if any(_value(metrics[x], split, m) is not None for x in metrics)]
    header = ["model", "params", "latency (ms)", *[f"{split} {m}" for split, m in cols], "seeds"]
    rows = []
    for model in ordered_models(metrics):
        e = metrics[model] if isinstance(metrics[model], dict) else {}
        lat = number(e.get("latency_ms"))
        row = [f"**{model}**" if model == "found" else model, params_text(e.get("params")),
               "–" if lat is None else f"{lat:.2f}"]
        for split, m in cols:
            v, s = _value(e, split, m), _std(e, split, m)
            row.append("–" if v is None else points(v) + (f" ± {points(s)}" if s is not None else ""))
        row.append(str(e.get("seeds", "–")))
        rows.append(row)
    return md_table(header, rows, ["l", "r", "r", *["r"] * len(cols), "r"])


def verdicts(metrics: dict, metric: str) -> list[str]:
    """Plain sentences, one per other model and split, saying where the found model wins or loses on
    `metric` and by how many points; first a one-line tally per split."""
    found = metrics.get("found")
    if not isinstance(found, dict):
        return []
    out: list[str] = []
    for split in ("test", "dev"):
        mine = _value(found, split, metric)
        if mine is None:
            continue
        wins, losses, ties, lines = [], [], [], []
        for other in ordered_models(metrics):
            if other == "found" or not isinstance(metrics[other], dict):
                continue
            theirs = _value(metrics[other], split, metric)
            if theirs is None:
                continue
            gap = 100 * abs(mine - theirs)
            by = f"{gap:.1f}" if round(gap, 1) > 0 else f"{gap:.2g}"
            pair = f"({points(mine)} vs {points(theirs)}"
            sizes = (number(found.get("params")), number(metrics[other].get("params")))
            if all(p is not None and p > 0 for p in sizes):
                pair += f"; {params_text(sizes[0])} vs {params_text(sizes[1])} parameters"
            pair += ")"
            spread = max([s for s in (_std(found, split, metric), _std(metrics[other], split, metric))
                          if s is not None], default=None)
            noise = (f", within the spread over seeds (std up to {points(spread)})"
                     if spread is not None and abs(mine - theirs) <= spread else "")
            if theirs > mine:
                losses.append(other)
                lines.append(f"- found loses to {other} on {split} {metric} by {by} points {pair}{noise}.")
            elif mine > theirs:
                wins.append(other)
                lines.append(f"- found beats {other} on {split} {metric} by {by} points {pair}{noise}.")
            else:
                ties.append(other)
                lines.append(f"- found ties with {other} on {split} {metric} ({points(mine)}).")
        if not lines:
            continue
        tally = f"On {split} {metric}, the found model beats {len(wins)} of {len(lines)} other models"
        tally += f" and loses to {len(losses)} ({', '.join(losses)})." if losses else "."
        out += [tally, "", *lines, ""]
    return out


def significance_lines(data: dict) -> list[str]:
    """significance.json as a table (difference, 95% interval, win rate, verdict per model) and one
    sentence each for the differences that are real and for those within the noise."""
    pairs = data.get("pairs") or {}
    if not pairs:
        return []
    metric, split = data.get("metric", "?"), data.get("split", "?")
    rows, real, noise = [], [], []
    for name, p in pairs.items():
        lo, hi = p["ci95"]
        rows.append([name, f"{100 * p['diff']:+.2f}", f"[{100 * lo:+.2f}, {100 * hi:+.2f}]",
                     f"{100 * p['win_rate']:.0f}%", p.get("verdict", "")])
        (noise if lo <= 0 <= hi else real).append(f"{name} ({100 * p['diff']:+.1f})")
    out = [f"Found minus each other model on {split} {metric}, ×100, with the 95% paired-bootstrap interval over "
           f"the split's examples ({data.get('resamples', '?'):,} resamples"
           f"{'' if data.get('seeds', 1) == 1 else ', each model the mean of its ' + str(data['seeds']) + ' seeds'}"
           f"; `significance.json`):", "",
           *md_table(["against", "difference", "95% interval", "found wins", "verdict"], rows,
                     ["l", "r", "r", "r", "l"]), ""]
    if real:
        out.append(f"Real differences (the interval excludes 0): {', '.join(real)}.")
    if noise:
        out.append(f"Within the noise (the interval includes 0, so this split cannot tell them apart): "
                   f"{', '.join(noise)}.")
    for name, why in (data.get("missing") or {}).items():
        out.append(f"Not compared with {name}: {why}.")
    return out + [""]


def ablation_table(data: dict) -> tuple[list[str], list[str]]:
    """(table, sentences): each variant's found-model metric (mean ± std over seeds, ×100), how far each
    variant lands from the full method, and the file's notes (what a variant leaves unchanged)."""
    metric = data.get("metric") or "metric"
    rows_in = [r for r in data.get("rows", []) if isinstance(r, dict)]
    rows = []
    fits = sorted({f for r in rows_in for f in (r.get("kendall_tau") or {})})
    for r in rows_in:
        cells = [str(r.get("variant", "?")), str(r.get("seeds", "–"))]
        for split in SPLITS:
            v, s = number(r.get(f"{split}_mean")), number(r.get(f"{split}_std"))
            cells.append("–" if v is None else points(v) + (f" ± {points(s)}" if s is not None else ""))
        for fit in fits:
            t = (r.get("kendall_tau") or {}).get(fit) or {}
            m, s = number(t.get("mean")), number(t.get("std"))
            cells.append("–" if m is None else f"{m:.2f}" + (f" ± {s:.2f}" if s else ""))
        rows.append(cells)
    table = md_table(["variant", "seeds", f"dev {metric}", f"test {metric}", *[f"τ ({fit})" for fit in fits]], rows,
                     ["l", "r", "r", "r", *["r"] * len(fits)])
    full = next((r for r in rows_in if r.get("variant") == "full"), None)
    sentences = []
    if full:
        for r in rows_in:
            if r is full:
                continue
            parts = []
            for split in SPLITS:
                a, b = number(r.get(f"{split}_mean")), number(full.get(f"{split}_mean"))
                if a is not None and b is not None:
                    d = 100 * (a - b)
                    parts.append(f"{split} {d:+.1f} points")
            pair = r.get("vs_full") if isinstance(r.get("vs_full"), dict) else None
            ci = [number(v) for v in pair.get("ci95") or []] if pair else []
            if pair and number(pair.get("diff")) is not None and len(ci) == 2 and None not in ci:
                lo, hi = 100 * ci[0], 100 * ci[1]
                word = {"worse than full": "switching it off hurts, beyond the interval",
                        "better than full": "switching it off helps, beyond the interval"}.get(
                    pair.get("verdict"), "within noise: the interval holds 0")
                parts = [p for p in parts if not p.startswith(pair.get("split", "test"))]
                parts.append(f"{pair.get('split', 'test')} {100 * number(pair['diff']):+.1f} points "
                             f"[{lo:+.1f}, {hi:+.1f}] (95% paired bootstrap)")
                sentences.append(f"- {r.get('variant')}: {', '.join(parts)} against the full method ({word}).")
            elif parts:
                worse = [p.split()[1].startswith("-") for p in parts]
                word = ("switching it off hurts here" if all(worse) else
                        "switching it off did not hurt here" if not any(worse) else "worse on one split, not the other")
                sentences.append(f"- {r.get('variant')}: {', '.join(parts)} against the full method ({word}).")
    notes = data.get("notes") if isinstance(data.get("notes"), dict) else {}
    sentences += [f"- Note on {variant}: {text}." for variant, text in notes.items()
                  if any(r.get("variant") == variant for r in rows_in)]
    return table, sentences


def architecture_table(layers: list[dict], per_layer_params: list[int] | None = None) -> list[str]:
    header = ["layer", "kind", "sharing", "FFN width", "heads"] + (["params"] if per_layer_params else [])
    rows = []
    for i, l in enumerate(layers):
        row = [str(i), str(l.get("kind")), str(l.get("sharing")), str(l.get("ffn_dim")), str(l.get("heads"))]
        if per_layer_params:
            row.append(f"{per_layer_params[i]:,}")
        rows.append(row)
    return md_table(header, rows, ["r", "l", "l", "r", "r"] + (["r"] if per_layer_params else []))


def heads_table(heads: dict) -> list[str]:
    rows = []
    for r in heads.get("layers", []):
        if not isinstance(r, dict):
            continue
        kept = r.get("kept")
        rows.append([str(r.get("layer", "?")), str(r.get("kind", "?")), str(r.get("width", "–")),
                     str(r.get("heads_before", "–")), ", ".join(str(k) for k in kept) if isinstance(kept, list) else "–",
                     str(r.get("heads_after", "–"))])
    return md_table(["layer", "kind", "attention width", "heads before", "kept (distinct) heads", "heads after"],
                    rows, ["r", "l", "r", "r", "l", "r"])

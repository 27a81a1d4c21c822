"""`write_report`: `report.md` and its PNG figures from whatever a run folder holds.

Each section draws from its own files and is replaced by a one-line note saying which file it lacks
when they are missing or unreadable, so a partial run (killed, or still going) renders too. Every
number and sentence is computed from the files; nothing is hard-coded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from elasticlm.errors import ElasticLMError
from elasticlm.report import plots, rankplots, searchplots, tables
from elasticlm.report.facts import facts_section, space_of
from elasticlm.report.files import REPORT_FILES, RUN, RunFiles, number, rel

# Every figure the report may write (a figure of an earlier report whose section is now skipped is removed).
FIGURES: tuple[str, ...] = ("growth.png", "pca_scores.png", "cka_heads.png", "block_similarity.png",
                            "architecture.png", "search_progress.png", "pareto.png", "rank_check.png")


class Skip(Exception):
    """A section (or part of one) cannot be drawn; the message is the one-line reason."""


@dataclass
class Context:
    """What the sections share while one report is written."""

    files: RunFiles
    """The run folder's reader."""
    md_dir: Path
    """The folder report.md is written to (figure links are relative to it)."""
    fig_dir: Path
    """Where the PNGs go."""
    written: list[Path] = field(default_factory=list)
    """PNGs written so far."""

    def figure(self, name: str, draw: Callable[[Path], Path], caption: str) -> list[str]:
        path = draw(self.fig_dir / name)
        self.written.append(path)
        rel = Path(os.path.relpath(path, self.md_dir)).as_posix()
        return [f"![{caption}]({rel})", ""]

    def need(self, value, *rels: str):
        if value is None:
            raise Skip(self.files.missing(*rels))
        return value

    def search_metric(self) -> str | None:
        for name in (rel(RUN.done(RUN.search)), rel(RUN.pareto)):
            data = self.files.json(name)
            if data and isinstance(data.get("metric"), str):
                return data["metric"]
        return None


def _results(ctx: Context) -> list[str]:
    metrics = ctx.need(ctx.files.json(rel(RUN.metrics)), rel(RUN.metrics))
    metrics = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    if not metrics:
        raise Skip("`metrics.json` lists no model")
    lines = ["Metrics ×100 (mean ± std over seeds where several ran). Parameters and latency as `metrics.json` "
             "records them: the elasticlm models count embeddings and encoder without the task head, and their "
             f"latency is batch 1 at 128 tokens on the machine that made the run{_latency_device(ctx, metrics)}.",
             "", *tables.results_table(metrics), ""]
    metric = tables.main_metric(metrics, ctx.search_metric())
    said = tables.verdicts(metrics, metric) if metric else []
    if said:
        lines += ["### Where the found model wins and loses", "", *said]
    elif "found" not in metrics:
        lines += ["_No `found` entry in `metrics.json` yet, so no comparison._", ""]
    sig = ctx.files.json(rel(RUN.significance))
    if sig:
        lines += ["### Which differences are real", "", *tables.significance_lines(sig)]
    elif "found" in metrics:
        lines += [f"_No `{rel(RUN.significance)}`, so no intervals: rerun `elasticlm compare` with this version._", ""]
    follows = _follows_teacher(ctx)
    if follows:
        lines += ["### How closely the found model follows its teacher", "", *follows]
    return lines


def _follows_teacher(ctx: Context) -> list[str]:
    """The found model's agreement with the task teacher by teacher confidence (classification runs whose
    predictions were saved; [] otherwise), every retrained seed of the found model included."""
    from elasticlm.report.agreement import agreement_lines

    teacher = ctx.files.npz(rel(RUN.reference_predictions("teacher")))
    folder = ctx.files.root / RUN.model("found")
    names = [RUN.predictions(RUN.model("found"))] + sorted(
        RUN.predictions(p.relative_to(ctx.files.root)) for p in folder.glob("seed-*") if p.is_dir())
    found = [f for f in (ctx.files.npz(rel(n)) for n in names) if f is not None]
    return agreement_lines(found, teacher) if teacher is not None and found else []


def _latency_device(ctx: Context, metrics: dict) -> str:
    """Where the models' latencies were measured, from their `latency.json` files: "" when unknown
    or the CPU only, else e.g. " (cuda; TF-IDF on the CPU)" — a GPU run mixes the two."""
    devices = set()
    for name in metrics:
        data = ctx.files.json(rel(RUN.teacher_latency) if name == "teacher" else rel(RUN.model_latency(name)))
        if isinstance(data, dict) and isinstance(data.get("device"), str):
            devices.add(data["device"])
    if not devices or devices == {"cpu"}:
        return ""
    tfidf = "; TF-IDF on the CPU" if "tfidf-logreg" in metrics else ""
    return f" ({', '.join(sorted(devices))}{tfidf})"


def _architecture(ctx: Context) -> list[str]:
    from elasticlm.space import Architecture

    arch = ctx.need(ctx.files.json(rel(RUN.arch)), rel(RUN.arch))
    layers = arch.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(l, dict) for l in layers):
        raise Skip('`arch.json` holds no "layers" list')
    space = space_of(ctx.files)
    lines = []
    per_layer = None
    if space is not None:
        try:
            count = space.count_params(space.validate(Architecture.from_list(layers)))
            per_layer = list(count.per_layer)
            lines += [f"{len(layers)} layers, {tables.params_text(count.total)} parameters "
                      f"({tables.params_text(count.embedding)} embeddings, {tables.params_text(count.encoder)} in the "
                      f"blocks).", ""]
        except (ElasticLMError, TypeError, ValueError) as err:
            lines += [f"_Parameters not counted: {str(err).splitlines()[0]}._", ""]
    kinds = [l.get("kind") for l in layers]
    shared = sum(l.get("sharing") in ("qv", "kv") for l in layers)
    lines += [f"{kinds.count('bert')} BERT and {kinds.count('mobile')} MobileBERT-style layers; {shared} of "
              f"{len(layers)} share a projection.", ""]
    lines += ctx.figure("architecture.png", lambda p: searchplots.plot_architecture(
        layers, p, hidden_size=space.hidden_size if space else None), "the found architecture, layer by layer")
    lines += [*tables.architecture_table(layers, per_layer), ""]
    return lines


def _search(ctx: Context) -> list[str]:
    lines: list[str] = []
    result = ctx.files.json(rel(RUN.done(RUN.search))) or {}
    metric = ctx.search_metric() or "fitness"
    gens = ctx.files.jsonl(rel(RUN.generations))
    pareto = ctx.files.json(rel(RUN.pareto))
    if gens is None and pareto is None:
        raise Skip(ctx.files.missing(rel(RUN.generations), rel(RUN.pareto)))
    if gens is not None:
        last = gens[-1]
        best = last.get("best") or {}
        first = number((gens[0].get("best") or {}).get("fitness"))
        s = (f"{len(gens)} generations (generation 0 is the initial population), "
             f"{tables.count(last.get('evaluated'))} distinct architectures scored")
        if number(best.get("fitness")) is not None:
            s += f"; best held-out {metric} {100 * best['fitness']:.1f}"
            if first is not None:
                s += f" (initial population's best {100 * first:.1f})"
            if best.get("short"):
                s += f": `{best['short']}`"
            if number(best.get("params")) is not None:
                s += f", {tables.params_text(best['params'])} parameters"
        lines += [s + ".", ""]
        lines += ctx.figure("search_progress.png", lambda p: searchplots.plot_search_progress(gens, p, metric=metric),
                            "best-so-far and mean fitness per generation")
    else:
        lines += [f"_Search progress skipped: {ctx.files.missing('search/generations.jsonl')}._", ""]
    rnd, best = result.get("random"), result.get("best")
    if isinstance(rnd, dict) and isinstance(best, dict) and None not in (number(rnd.get("fitness")),
                                                                          number(best.get("fitness"))):
        diff = 100 * (best["fitness"] - rnd["fitness"])
        where = f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}" if diff else "level with"
        lines += [f"Random search with the same number of scored architectures "
                  f"({tables.count(rnd.get('evaluated'))}) found {100 * rnd['fitness']:.1f}: the search's best "
                  f"is {where} it on the held-out split.", ""]
    if pareto is not None:
        points = [p for p in pareto.get("points", []) if isinstance(p, dict)
                  and number(p.get("params")) is not None and number(p.get("fitness")) is not None]
        front = sorted((c for c in pareto.get("front", []) if isinstance(c, dict)
                        and number(c.get("params")) is not None and number(c.get("fitness")) is not None),
                       key=lambda c: c["params"])
        if not points and not front:
            lines += ["_Pareto plot skipped: `search/pareto.json` holds no scored points._", ""]
        else:
            lines += [f"{len(points)} scored architectures; {len(front)} on the Pareto front of parameters vs "
                      f"held-out {pareto.get('metric', metric)}.", ""]
            lines += ctx.figure("pareto.png", lambda p: searchplots.plot_pareto(
                points, front, p, metric=pareto.get("metric", metric), best=best if isinstance(best, dict) else None,
                ceiling=number(result.get("ceiling"))), "parameters vs fitness with the Pareto front")
    else:
        lines += [f"_Pareto plot skipped: {ctx.files.missing('search/pareto.json')}._", ""]
    return lines


def _growth(ctx: Context) -> list[str]:
    lines = ctx.need(ctx.files.jsonl(rel(RUN.growth)), rel(RUN.growth))
    blocks, rounds, widths = plots.growth_matrix(lines)
    if not blocks:
        raise Skip("`supernet/growth.jsonl` lists no blocks")
    import numpy as np

    start, end = widths[:, 0], widths[:, -1]
    grew = [(plots.block_label(b), int(s), int(e)) for b, s, e in zip(blocks, start, end)
            if np.isfinite(s) and np.isfinite(e)]
    grew.sort(key=lambda t: t[2] - t[1], reverse=True)
    n_grew = sum(e > s for _, s, e in grew)
    text = (f"{len(rounds) - 1} growth rounds over {len(blocks)} blocks: mean FFN width "
            f"{np.nanmean(start):.0f} → {np.nanmean(end):.0f}; {n_grew} blocks grew at least once.")
    if grew and grew[0][2] > grew[0][1]:
        text += " Grew most: " + ", ".join(f"{lab} {s}→{e}" for lab, s, e in grew[:3] if e > s) + "."
    stopped = next((line for line in lines if line.get("stopped")), None)
    if stopped is not None:
        text += f" Growth stopped at step {stopped.get('step', '?')}: the mean width had reached its target."
    return [text, "", *ctx.figure("growth.png", lambda p: plots.plot_growth(lines, p),
                                  "FFN width per block over the growth rounds")]


def _pca(ctx: Context) -> list[str]:
    lines = ctx.need(ctx.files.jsonl(rel(RUN.growth)), rel(RUN.growth))
    if not any(line.get("blocks") for line in lines):
        raise Skip("`supernet/growth.jsonl` lists no block scores")
    return ["Each block's PCA score at each growth round (by default the share of its FFN width its activations "
            "use: principal components for 99% of the variance, over the width); the top-scoring blocks are widened. "
            "Filled markers: the blocks that grew in that round.", "",
            *ctx.figure("pca_scores.png", lambda p: plots.plot_pca_scores(lines, p), "PCA scores per layer")]


def _heads(ctx: Context) -> list[str]:
    heads = ctx.files.json(rel(RUN.heads_json))
    cka = ctx.files.npz(rel(RUN.cka))
    if heads is None and cka is None:
        raise Skip(ctx.files.missing(rel(RUN.heads_json), rel(RUN.cka)))
    lines = []
    if heads is not None:
        before = sum(number(r.get("heads_before")) or 0 for r in heads.get("layers", []) if isinstance(r, dict))
        after = sum(number(r.get("heads_after")) or 0 for r in heads.get("layers", []) if isinstance(r, dict))
        lines += [f"Heads whose contexts are alike (linear CKA above η = {heads.get('eta', '?')}) are merged: "
                  f"{int(before)} heads → {int(after)} in all.", "", *tables.heads_table(heads), ""]
    else:
        lines += [f"_Head table skipped: {ctx.files.missing('heads/heads.json')}._", ""]
    if cka:
        lines += ctx.figure("cka_heads.png", lambda p: plots.plot_cka_heads(cka, heads, p),
                            "CKA between attention heads per layer, kept heads marked")
    else:
        lines += [f"_CKA heatmaps skipped: {ctx.files.missing('heads/cka.npz')}._", ""]
    return lines


def _similarity(ctx: Context) -> list[str]:
    rel = ctx.files.first("ablation/similarity.json", "similarity.json")
    data = ctx.need(ctx.files.json(rel), rel)
    data = {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("matrix"), list) and v["matrix"]}
    if not data:
        raise Skip(f"`{rel}` holds no matrix")
    import numpy as np

    means = {k: plots.off_diagonal_mean(np.asarray(v["matrix"], dtype=float)) for k, v in data.items()}
    text = "Mean CKA between different candidate blocks' outputs: " + ", ".join(
        f"{k} {m:.2f}" for k, m in means.items()) + "."
    if "relational" in means and "classic" in means:
        more = "relational" if means["relational"] < means["classic"] else "classic"
        text += f" The blocks are more diverse (less alike) under {more} distillation."
    return [text, "", *ctx.figure("block_similarity.png", lambda p: plots.plot_similarity(data, p),
                                  "block similarity under relational vs classic distillation")]


def _ablation(ctx: Context) -> list[str]:
    rel = ctx.files.first("ablation/ablation.json", "ablation.json")  # in a run, or the folder of `elasticlm ablate`
    data = ctx.need(ctx.files.json(rel), rel)
    if not data.get("rows"):
        raise Skip(f"`{rel}` holds no rows")
    table, said = tables.ablation_table(data)
    return ["The found model of each variant (one component switched off), ×100, mean ± std over seeds.", "",
            *table, "", *said, *([""] if said else [])]


def _rank_check(ctx: Context) -> list[str]:
    data = ctx.need(ctx.files.json(rel(RUN.ranking)), rel(RUN.ranking))
    archs = rankplots.usable_archs(data)
    if not archs or not data.get("fitnesses"):
        raise Skip(f"`{rel(RUN.ranking)}` holds no retrained architecture")
    roles = {r: sum(a.get("role") == r for a in archs) for r in rankplots.ROLE_COLOURS}
    seeds = data.get("seeds") or []
    lines = [f"{len(archs)} architectures ({', '.join(f'{n} {r}' for r, n in roles.items() if n)}) scored by each "
             f"supernet fitness and retrained with the run's recipe ({len(seeds)} seed{'s' * (len(seeds) != 1)} "
             f"each: {data.get('metric', 'metric')} on {data.get('split', 'test')}, mean ± std). Kendall's τ between "
             f"a fitness and the retrained metric says how well the supernet orders architectures (1: as "
             f"retraining does, 0: no better than chance); the interval is a bootstrap over the architectures. "
             f"In bold, the fitness the search used.", "", *rankplots.tau_table(data), ""]
    lines += ctx.figure("rank_check.png", lambda p: rankplots.plot_ranking(data, p),
                        "supernet fitness vs retrained metric, one panel per fitness")
    for note in (n for n in data.get("notes", []) if isinstance(n, str)):
        lines += [f"_Note: {note}._", ""]
    return lines


def _facts(ctx: Context) -> list[str]:
    lines = facts_section(ctx.files)
    if lines is None:
        raise Skip(ctx.files.missing(rel(RUN.run_config), rel(RUN.done(RUN.supernet))))
    return lines


SECTIONS: tuple[tuple[str, Callable[[Context], list[str]]], ...] = (
    ("Results", _results),
    ("The found architecture", _architecture),
    ("Search", _search),
    ("FFN growth in supernet pretraining", _growth),
    ("PCA scores per layer", _pca),
    ("Head search", _heads),
    ("Block similarity: relational vs classic distillation", _similarity),
    ("Ablation", _ablation),
    ("How it was made, what it cost", _facts),
)
# Sections drawn only when their file exists (the output of an optional command): (title, section, file).
OPTIONAL_SECTIONS: tuple[tuple[str, Callable[[Context], list[str]], str], ...] = (
    ("Can the supernet tell architectures apart?", _rank_check, rel(RUN.ranking)),
)


def check_run_folder(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise ElasticLMError(f"{run_dir} is not a folder; give the --out folder of `elasticlm run`")
    if not (run_dir / rel(RUN.run_config)).is_file() and not any((run_dir / f).is_file() for f in REPORT_FILES):
        raise ElasticLMError(f"{run_dir} is not a run folder (no run_config.json, metrics.json, arch.json or stage "
                             f"files); give the --out folder of `elasticlm run`")


def write_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of run folder `run_dir` to `out` (default RUN/report.md) with its PNGs in the folder
    named after it (RUN/report/); returns the report's path. Reads files only (no torch)."""
    from elasticlm.io import atomic_file

    run_dir = Path(run_dir).expanduser()
    check_run_folder(run_dir)
    out = Path(out).expanduser() if out is not None else run_dir / "report.md"
    if out.is_dir():
        raise ElasticLMError(f"--out {out} is a folder; give a file name such as {out / 'report.md'}")
    ctx = Context(RunFiles(run_dir), out.parent, out.parent / out.stem)
    body, skipped = [], []
    sections = [*SECTIONS, *((title, make) for title, make, f in OPTIONAL_SECTIONS if ctx.files.exists(f))]
    for title, make in sections:
        if body and body[-1]:
            body.append("")  # a section's lines may not end in a blank one
        body += [f"## {title}", ""]
        try:
            body += make(ctx)
        except Skip as why:
            skipped.append(title)
            body += [f"_Skipped: {why}._", ""]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            skipped.append(title)
            body += [f"_Skipped: the files of this section are not in the expected format "
                     f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})._", ""]
    head = [f"# elasticlm report: {run_dir.resolve().name}", "",
            f"Made by `elasticlm report` from the files of `{run_dir}`; every number below is read from them.", ""]
    if skipped:
        head += [f"{len(sections) - len(skipped)} of {len(sections)} sections drawn; skipped for want of files: "
                 + ", ".join(skipped) + ".", ""]
    for name in FIGURES:  # figures of an earlier report that this one did not draw
        stale = ctx.fig_dir / name
        if stale.exists() and stale not in ctx.written:
            stale.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        tmp.write_text("\n".join(head + body).rstrip() + "\n", encoding="utf-8")
    return out

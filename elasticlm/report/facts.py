"""The report's "how it was made / what it cost" section: the run's config in one paragraph and a
table of every stage's steps, tokens and seconds from the stage `result.json` files."""

from __future__ import annotations

from elasticlm.report.files import RUN, RunFiles, number, rel
from elasticlm.report.tables import count, md_table, params_text, seconds


def _get(data: dict, *keys, default=None):
    for k in keys:
        if not isinstance(data, dict) or k not in data:
            return default
        data = data[k]
    return data


def config_sentence(cfg: dict) -> str:
    """One paragraph: what `elasticlm run` was asked to do."""
    parts = [f"preset **{cfg.get('preset', '?')}** on task **{cfg.get('task', '?')}**"]
    parts.append(f"teacher `{cfg.get('teacher', '?')}`, pretraining corpus `{cfg.get('corpus', '?')}`, "
                 f"seed {cfg.get('seed', '?')}")
    search = cfg.get("search") or {}
    evo = search.get("evolution") or {}
    if search:
        s = f"search: {search.get('mode', 'evolution')}"
        if evo.get("population") and evo.get("generations") is not None:
            s += f", population {evo['population']} × {evo['generations']} generations"
        if search.get("ceiling"):
            s += f", ceiling {params_text(search['ceiling'])} parameters"
        parts.append(s)
    retrain = cfg.get("retrain") or {}
    if retrain:
        s = f"retraining: seeds {retrain.get('seeds', '?')}, init {retrain.get('init', '?')}"
        epochs = _get(retrain, "train", "epochs")
        if epochs is not None:
            s += f", {epochs:g} epoch{'' if epochs == 1 else 's'}" if isinstance(epochs, (int, float)) else ""
        if retrain.get("pretrain_steps"):
            s += f" after {retrain['pretrain_steps']} distillation-pretraining steps"
        parts.append(s)
    if cfg.get("baselines") is not None:
        parts.append("baselines: " + (", ".join(cfg["baselines"]) or "none")
                     + (" + tfidf-logreg" if cfg.get("tfidf") else ""))
    return "Made by `elasticlm run` with " + "; ".join(parts) + "."


def _tokens(t) -> str:
    v = number(t)
    return "–" if v is None else (f"{v / 1e6:.2f}M" if v >= 1e5 else f"{int(v):,}")


def stage_rows(files: RunFiles) -> tuple[list[list[str]], float]:
    """(rows, total seconds) for every stage whose result.json is present."""
    rows, total = [], 0.0

    def add(name: str, res: dict | None, what: str) -> None:
        nonlocal total
        if not res:
            return
        s = number(res.get("seconds"))
        total += s or 0.0
        rows.append([name, count(res.get("steps")), _tokens(res.get("tokens")), seconds(s), what])

    pre = files.json(rel(RUN.done(RUN.supernet)))
    if pre:
        what = []
        if number(pre.get("growth_rounds")) is not None:
            what.append(f"{int(pre['growth_rounds'])} growth rounds")
        if number(pre.get("mean_ffn_width")) is not None:
            what.append(f"mean FFN width {pre['mean_ffn_width']:.0f}")
        add("supernet pretraining", pre, ", ".join(what))
    ft = files.json(rel(RUN.done(RUN.supernet_ft)))
    if ft:
        what = []
        for task, t in (ft.get("tasks") or {}).items():
            held = _get(t, "summary", "heldout", "mean")
            if number(held) is not None:
                what.append(f"{task}: random paths {100 * held:.1f} held-out {t.get('metric', '')}".rstrip())
        add("supernet fine-tuning", ft, "; ".join(what))
    search = files.json(rel(RUN.done(RUN.search)))
    if search:
        what = f"{count(search.get('evaluated'))} architectures scored ({search.get('mode', 'evolution')})"
        if number(search.get("candidates_per_s")) is not None:
            what += f", {search['candidates_per_s']:.2f}/s"
        add("search", search, what)
    heads = files.json(rel(RUN.done(RUN.heads)))
    if heads:
        add("head search", heads, f"heads per layer {heads.get('heads', '?')}")
    models = files.root / "models"
    if models.is_dir():
        for folder in sorted(p for p in models.iterdir() if p.is_dir()):
            seeds = [files.json(str(r.relative_to(files.root))) for r in
                     [folder / "result.json", *sorted(folder.glob("seed-*/result.json"))]]
            seeds = [r for r in seeds if r]
            if seeds:
                steps = sum(number(r.get("steps")) or 0 for r in seeds)
                secs = sum(number(r.get("seconds")) or 0 for r in seeds)
                add(f"retraining {folder.name}", {"steps": steps, "seconds": secs},
                    f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    export = files.json(rel(RUN.export_info))
    if export:
        add("export", export, "HF folder" + (" + ONNX" if export.get("onnx") else ""))
    return rows, total


def facts_section(files: RunFiles) -> list[str] | None:
    """The section's lines, or None when the run holds neither a config nor any stage result."""
    lines: list[str] = []
    cfg = files.json(rel(RUN.run_config))
    if cfg:
        lines += [config_sentence(cfg.get("config", cfg) if isinstance(cfg.get("config"), dict) else cfg), ""]
    rows, total = stage_rows(files)
    if rows:
        rows.append(["**total**", "", "", f"**{seconds(total)}**", "sum of the stages' own timings"])
        lines += md_table(["stage", "steps", "tokens", "time", "what came out"], rows, ["l", "r", "r", "r", "l"])
        lines += ["", "Times are what each stage measured itself (teacher fine-tuning, data preparation and "
                      "evaluation outside the stages are not included)."]
    return lines or None


def space_of(files: RunFiles):
    """The run's SearchSpace from a supernet config.json, or None."""
    from elasticlm.errors import ElasticLMError
    from elasticlm.space import SearchSpace

    for name in (rel(RUN.stage_config(RUN.supernet_ft)), rel(RUN.stage_config(RUN.supernet))):
        cfg = files.json(name)
        if cfg and isinstance(cfg.get("space"), dict):
            try:
                return SearchSpace.from_dict(cfg["space"])
            except (ElasticLMError, TypeError, ValueError):
                continue
    return None


"""The model card (`README.md`) of an export: Hub metadata, usage, architecture, parameters,
results and how the model was made, all read from the model and its run folder (no number typed in)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from elasticlm.run_layout import RunLayout
from elasticlm.space import Architecture

ORDER = ("found", "uniform-bert", "uniform-mobile", "random-search", "teacher", "tfidf-logreg", "majority")
"""Rows of the results table, in this order (other models of metrics.json follow)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yaml_list(items) -> list[str]:
    return [f"- {json.dumps(str(i))}" for i in items]


def _front_matter(head, task: str | None, metric_names: list[str]) -> str:
    tags = ["elasticlm", "custom_code", "neural-architecture-search", "knowledge-distillation", head.pipeline_tag]
    lines = ["---", "library_name: transformers", f"pipeline_tag: {head.pipeline_tag}", "license: apache-2.0",
             "tags:", *_yaml_list(tags)]
    if task and "/" not in task and "\\" not in task and not task.startswith("."):
        lines += ["datasets:", *_yaml_list([task])]
    if metric_names:
        lines += ["metrics:", *_yaml_list(metric_names)]
    return "\n".join([*lines, "---", ""])


def _architecture(model) -> list[str]:
    config = model.config
    space = config.search_space()
    arch = Architecture.from_list(config.architecture)
    rows = ["| layer | block | sharing | FFN width | heads | parameters |", "|---:|---|---|---:|---:|---:|"]
    for i, layer in enumerate(arch):
        rows.append(f"| {i} | {layer.kind} | {layer.sharing} | {layer.ffn_dim} | {layer.heads} | "
                    f"{space.layer_params(layer):,} |")
    return [
        f"{len(arch)} layers of hidden size d = {config.hidden_size} over a factorized embedding (vocabulary "
        f"{config.vocab_size:,}, e = {config.embedding_size}, up to {config.max_position_embeddings} positions). "
        f"`bert` blocks are multi-head attention + one FFN; `mobile` blocks run a narrower bottleneck "
        f"(attention width i = d/4 = {space.inner_size}) with {config.mobile_ffns} stacked FFNs; `sharing` says which "
        f"attention projections share weights (`qv`: query = value, `kv`: key = value). In short: `{arch.short()}`.",
        "", *rows, ""]


def _parameters(model) -> list[str]:
    total = model.num_parameters()
    base = model.base_model
    embeddings = sum(p.numel() for p in base.embeddings.parameters())
    blocks = sum(p.numel() for p in base.parameters()) - embeddings
    rows = ["| part | parameters |", "|---|---:|", f"| embeddings (factorized) | {embeddings:,} |",
            f"| blocks (non-embedding) | {blocks:,} |"]
    if total - embeddings - blocks:
        rows.append(f"| task head | {total - embeddings - blocks:,} |")
    rows.append(f"| **total** | **{total:,}** |")
    return [*rows, ""]


def _value(m: dict, split: str, name: str) -> str:
    v = (m.get(split) or {}).get(name)
    if v is None:
        return "–"
    std = ((m.get("std") or {}).get(split) or {}).get(name)
    return f"{100 * v:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * v:.1f}"


def _results(metrics: dict) -> tuple[list[str], list[str]]:
    """(markdown lines, metric names) of metrics.json's table."""
    names = list(dict.fromkeys(k for m in metrics.values() for split in ("dev", "test")
                               for k in (m.get(split) or {})))
    models = [n for n in ORDER if n in metrics] + [n for n in metrics if n not in ORDER]
    head = ["model", "parameters", "latency (ms, batch 1)", *[f"dev {n}" for n in names], *[f"test {n}" for n in names]]
    rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in models:
        m = metrics[name]
        params = f"{m['params'] / 1e6:.2f}M" if m.get("params") else "–"
        latency = f"{m['latency_ms']:.1f}" if m.get("latency_ms") else "–"
        label = f"**{name}** (this model)" if name == "found" else name
        cells = [label, params, latency, *[_value(m, "dev", n) for n in names], *[_value(m, "test", n) for n in names]]
        rows.append("| " + " | ".join(cells) + " |")
    lines = ["Metrics ×100 (mean ± std over seeds where several were run), as the run measured them.", "", *rows, ""]
    found = metrics.get("found")
    if found and names:
        split = "test" if (found.get("test") or {}).get(names[0]) is not None else "dev"
        mine = (found.get(split) or {}).get(names[0])
        better = [f"{n} ({100 * metrics[n][split][names[0]]:.1f})" for n in models
                  if n != "found" and mine is not None and (metrics[n].get(split) or {}).get(names[0]) is not None
                  and metrics[n][split][names[0]] > mine]
        if better:
            lines += [f"On {split} {names[0]} the found model ({100 * mine:.1f}) is below: {', '.join(better)}.", ""]
        elif mine is not None:
            lines += [f"On {split} {names[0]} the found model ({100 * mine:.1f}) is at or above every other row.", ""]
    return lines, names


def _how_made(source, run_config: dict | None) -> list[str]:
    if not run_config:
        return [f"Exported from the model folder `{source.model_dir.name}`; no run configuration came with it.", ""]
    keys = ("preset", "task", "teacher", "corpus", "seed")
    settings = ", ".join(f"{k} `{run_config[k]}`" for k in keys if run_config.get(k) is not None)
    retrain = run_config.get("retrain") or {}
    train = retrain.get("train") or {}
    lines = [
        f"Made by `elasticlm run` ({settings}), which runs elastic architecture search end to end:",
        "",
        "1. a supernet of elastic blocks (BERT-style and MobileBERT-style, with and without shared attention "
        "projections) is pretrained by distillation from the teacher on the pretraining corpus, its FFNs "
        "grown where their activations need the width;",
        "2. the supernet is fine-tuned on the task (the first 90% of its training split) with a task-fine-tuned "
        "copy of the teacher;",
        "3. an evolutionary search scores architectures within the parameter budget on the held-out 10%;",
        "4. heads whose attention contexts are near-duplicates are merged (head-number search);",
        f"5. the final architecture is retrained on the full training split with logit distillation from the "
        f"task teacher ({train.get('epochs', '?')} epochs, seeds {retrain.get('seeds', '?')}) and evaluated on "
        f"dev and test, as are the equal-budget baselines in the table above.",
        "",
        *_run_facts(source.run_dir),
        "The run's resolved configuration is in its `run_config.json`; see the elasticlm README "
        "(\"The run folder\") for what each stage writes.",
        "",
    ]
    return lines


def _run_facts(run_dir: Path) -> list[str]:
    """What the run's search and head-search stages recorded, when their files are there."""
    facts = []
    run = RunLayout(run_dir)
    search = _read_json(run.done(run.search))
    if isinstance(search, dict) and search.get("evaluated"):
        facts.append(f"The search scored {int(search['evaluated']):,} distinct architectures"
                     + (f" in {float(search['seconds']):.0f} s." if search.get("seconds") else "."))
    heads = _read_json(run.heads / "heads.json")
    layers = heads.get("layers") if isinstance(heads, dict) else None
    if isinstance(layers, list) and layers and all(isinstance(l, dict) for l in layers):
        try:
            before = sum(int(l["heads_before"]) for l in layers)
            after = sum(int(l["heads_after"]) for l in layers)
        except (KeyError, TypeError, ValueError):
            return facts
        eta = f" (CKA threshold {heads['eta']})" if heads.get("eta") is not None else ""
        facts.append(f"Head search{eta} kept {after} of {before} attention heads.")
    return [" ".join(facts), ""] if facts else []


def _export_section(result: dict) -> list[str]:
    lines = [f"Exported with elasticlm {_versions()} on {_dt.date.today().isoformat()}. The exported code "
             f"reproduced the library model's outputs (max |difference| {result['reload_max_abs_diff']:.2g}).", ""]
    onnx = result.get("onnx")
    if onnx:
        lines += [f"`{onnx['file']}` (opset {onnx['opset']}, inputs {', '.join(onnx['inputs'])}; dynamic batch and "
                  f"sequence axes): max |onnxruntime − PyTorch| = {onnx['max_abs_diff']:.2g} on a padded "
                  f"{onnx['checked_on']} batch (tolerance {onnx['tolerance']:g}).", ""]
    q = result.get("int8")
    if q:
        lines.append(f"`{q['file']}`: dynamic int8 quantisation (onnxruntime), {q['size_mb']} MB vs "
                     f"{q['fp32_size_mb']} MB, measured on {q['on']}:")
        lines.append("")
        if "change" in q:
            for k, v in q["change"].items():
                lines.append(f"- {k}: {100 * q['fp32'][k]:.2f} (fp32 ONNX) → {100 * q['int8'][k]:.2f} (int8), "
                             f"change {100 * v:+.2f} points")
        if "argmax_agreement" in q:
            lines.append(f"- arg-max agreement with fp32: {100 * q['argmax_agreement']:.1f}%")
        for name, s in q["speed"].items():
            lines.append(f"- speed-up ({name}, {s['examples']} examples): ×{s['speedup']:.2f} "
                         f"({s['fp32_ms']:.1f} ms → {s['int8_ms']:.1f} ms)")
        lines.append("")
    return lines


def _versions() -> str:
    import torch
    import transformers

    from elasticlm import __version__

    return f"{__version__} (torch {torch.__version__}, transformers {transformers.__version__})"


def model_card(model, head, source, result: dict, auto_names: dict[str, str]) -> str:
    """The README.md of an export (see the module docstring)."""
    run = RunLayout(source.run_dir) if source.run_dir else None
    run_config = _read_json(run.run_config) if run else None
    metrics = _read_json(run.metrics) if run else None
    if not isinstance(metrics, dict) or not metrics:
        own = _read_json(RunLayout.done(source.model_dir))
        metrics = {"found": own} if isinstance(own, dict) and ("dev" in own or "test" in own) else None
    task = (run_config or {}).get("task") if isinstance(run_config, dict) else None
    results, metric_names = _results(metrics) if metrics else (["No evaluation results came with this model.", ""], [])
    name = (source.run_dir or source.model_dir).resolve().name
    cls = type(model).__name__
    what = {"text-classification": "text classifier", "fill-mask": "masked language model",
            "text-generation": "causal language model", "question-answering": "extractive QA model",
            "feature-extraction": "encoder"}[head.pipeline_tag]
    total = model.num_parameters()
    usage = [
        "```python",
        f"from transformers import {head.auto_class}, AutoTokenizer, pipeline",
        "",
        f'model = {head.auto_class}.from_pretrained("PATH/TO/THIS/FOLDER", trust_remote_code=True)',
        '# the tokenizer is a standard one; trust_remote_code only spares the question transformers asks',
        '# when it reads config.json (which names this folder\'s code)',
        'tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER", trust_remote_code=True)',
        f'pipe = pipeline("{head.pipeline_tag}", model="PATH/TO/THIS/FOLDER", trust_remote_code=True)',
        "```",
        "",
        "The modeling code travels in this folder (`modeling_elasticlm.py` and the `elasticlm_*.py` files it "
        "imports), so only torch and transformers are needed; `config.json`'s `auto_map` points "
        f"{', '.join(f'`{a}`' for a in ['AutoConfig', *auto_names])} at it. With elasticlm installed, "
        "`import elasticlm` lets the same Auto classes load it without `trust_remote_code`.",
        "",
    ]
    labels = getattr(model.config, "id2label", None) or {}
    if head.pipeline_tag == "text-classification" and labels:
        usage += ["Labels: " + ", ".join(f"{i} = `{labels[i]}`" for i in sorted(labels, key=int)) + ".", ""]
    body = [
        _front_matter(head, task, metric_names),
        f"# {name}",
        "",
        f"A compact {what} (`{cls}`, {total / 1e6:.2f}M parameters) whose architecture was found by elastic "
        f"architecture search with elasticlm — each layer picks its block type, "
        f"attention-weight sharing, FFN width and number of heads.",
        "",
        "## Usage", "", *usage,
        "## Architecture", "", *_architecture(model),
        "## Parameters", "", *_parameters(model),
        "## Results", "", *results,
        "## How it was made", "", *_how_made(source, run_config if isinstance(run_config, dict) else None),
        "## Export", "", *_export_section(result),
        "## Limitations", "",
        "A small model trained on one task: expect it to do well only on text like that task's data. Its "
        "weights come from distillation, so the teacher's and the training data's licences and biases carry "
        "over; the `license` above is the elasticlm code's.",
        "",
    ]
    return "\n".join(body)

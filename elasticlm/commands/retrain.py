"""`elasticlm retrain`, `evaluate`, `compare` and `ablate`: the final model and honest comparisons."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elasticlm.commands.options import add_const, add_fields, build

RETRAIN = "elasticlm.train.retrain:RetrainConfig"

RETRAIN_EXAMPLE = """examples:
  elasticlm retrain --supernet runs/demo/supernet-ft --arch runs/demo/heads/arch.json --out runs/demo/found
  elasticlm retrain --supernet runs/demo/supernet-ft --arch arch.json --scratch --seeds 0 1 2 --out runs/demo/scratch
"""
EVALUATE_EXAMPLE = """examples:
  elasticlm evaluate runs/demo/models/found --task rt-polarity
  elasticlm evaluate runs/demo/export --task ./my-reviews --json scores.json
"""
COMPARE_EXAMPLE = """examples:
  elasticlm compare runs/demo            # retrain (or reuse) found + baselines, write metrics.json, print the table
"""
ABLATE_EXAMPLE = """examples:
  elasticlm ablate --preset demo --seeds 0 1 --out runs/ablate
  elasticlm ablate --preset demo --variants full classic-kd --out runs/ablate retrain.train.epochs=2
"""


def register(subparsers) -> None:
    r = subparsers.add_parser("retrain", help="retrain an architecture as a standalone model and evaluate it",
                              epilog=RETRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--supernet", required=True, help="fine-tuned supernet folder (weights to inherit, the space)")
    r.add_argument("--arch", required=True, help="arch.json, or a search/heads folder")
    add_fields(r, RETRAIN, ["task", "teacher", ("data-dir", "data_dir"), "seeds", ("epochs", "train.epochs"),
                            ("lr", "train.lr")])
    add_const(r, "--scratch", "init", "scratch", "initialise from scratch instead of the supernet")
    r.add_argument("--out", required=True, help="output folder (seed k > first in seed-k/)")
    r.add_argument("--config", help="YAML file with retrain config fields")
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any config field, e.g. distill.alpha_logit=2")
    r.set_defaults(func=_retrain)

    e = subparsers.add_parser("evaluate", help="score a saved classification, regression or QA model on a task's "
                                               "dev/test",
                              epilog=EVALUATE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help="a model folder (save_pretrained / export) with its tokenizer")
    e.add_argument("--task", required=True, help="task name or dataset folder")
    e.add_argument("--data-dir", help="folder with GLUE TSVs / SQuAD JSON")
    e.add_argument("--max-length", type=int, default=128, help="tokens per example (default 128)")
    e.add_argument("--json", help="also write the metrics to this file")
    e.set_defaults(func=_evaluate)

    c = subparsers.add_parser("compare", help="retrain the found model and the equal-budget baselines of a run, "
                              "write metrics.json and print the table", epilog=COMPARE_EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("run", help="a run folder of `elasticlm run` (search and heads done)")
    c.set_defaults(func=_compare)

    a = subparsers.add_parser("ablate", help="the ablation grid (fixed widths, no head search, classic KD, no "
                              "weight sharing), mean ± std over seeds", epilog=ABLATE_EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("config", nargs="?", help="YAML run config (applied over the preset)")
    a.add_argument("--preset", help="demo, micro, tiny or small")
    add_fields(a, "elasticlm.experiment.run:RunConfig", ["task"])
    a.add_argument("--variants", nargs="+", help="subset of: full fixed-dims no-head-search classic-kd no-sharing")
    a.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per variant (default 0)")
    a.add_argument("--out", required=True, help="output folder (one run folder per variant and seed)")
    a.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any run config field")
    a.set_defaults(func=_ablate)


def _retrain(args) -> int:
    from elasticlm.commands.search import load_arch
    from elasticlm.train.retrain import (RetrainConfig, build_model, prepare_task, retrain_model, scratch_net,
                                         summarize)
    from elasticlm.train.supernet import load_supernet

    cfg = build(RetrainConfig(), args)
    cfg.validate()
    net, _ = load_supernet(args.supernet)
    arch = net.space.validate(load_arch(args.arch))
    data = prepare_task(cfg, vocab_size=net.space.vocab_size, max_positions=net.space.max_position_embeddings)
    results = []
    for i, seed in enumerate(cfg.seeds):
        src = net if cfg.init == "supernet" else scratch_net(net.space, arch, data.spec, data.spec.name, seed=seed)
        folder = Path(args.out) / ("" if i == 0 else f"seed-{seed}")
        model = None if (folder / "result.json").exists() else build_model(
            src, arch, data.spec.name, cfg, Path(args.out) / "pretrain" / f"seed-{seed}")
        results.append(retrain_model(model, data, cfg, folder, seed=seed,
                                     run_config={"arch": arch.to_list(), "supernet": str(Path(args.supernet).resolve())}))
    s = summarize(results)
    for split in ("dev", "test"):
        if split in s:
            std = s.get("std", {}).get(split, {})
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" + (f" ± {std[k]:.4f}" if k in std else "")
                                           for k, v in s[split].items()))
    print(f"model: {args.out} ({s['params'] / 1e6:.2f}M parameters)")
    return 0


def _evaluate(args) -> int:
    import torch
    from transformers import AutoTokenizer

    import elasticlm.models  # noqa: F401  (registers the Auto classes)
    from elasticlm.data.tasks import load_task
    from elasticlm.distill.teachers import quiet_transformers
    from elasticlm.errors import ElasticLMError
    from elasticlm.train.evaluation import Batches, evaluate_model

    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise ElasticLMError(f"{folder} holds no saved model (config.json); give a save_pretrained or export folder")
    data = load_task(args.task, data_dir=args.data_dir)
    kind = data.spec.task_kind
    with quiet_transformers():
        model = kind.auto_model(folder, trust_remote_code=True)
        tok = AutoTokenizer.from_pretrained(folder)
    if model.config.num_labels != data.spec.num_labels:
        raise ElasticLMError(f"{folder} predicts {model.config.num_labels} labels but task {data.spec.name} has "
                             f"{data.spec.num_labels}")
    splits = ["dev"] + (["test"] if data.eval_split() == "test" else [])
    out = {}
    for split in splits:
        length = min(args.max_length, model.config.max_position_embeddings)
        rows = kind.eval_rows(data.splits[split], data.spec, tok, args.max_length)
        batches = Batches.for_task(data.spec, rows, pad_id=tok.pad_token_id or 0, tokenizer=tok, max_length=length)
        with torch.no_grad():
            out[split] = evaluate_model(model, batches, data.spec, bf16=False)
        print(f"{data.spec.name} {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[split].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _compare(args) -> int:
    from elasticlm.experiment.run import compare

    metrics = compare(Path(args.run))
    print(table(metrics))
    return 0


def table(metrics: dict) -> str:
    """metrics.json as a plain-text table (params, latency, dev and test main metrics)."""
    names = sorted({k for m in metrics.values() for s in ("dev", "test") for k in m.get(s, {})})
    head = f"{'model':16s} {'params':>8s} {'ms':>7s} " + " ".join(f"{s + ' ' + n:>14s}" for s in ("dev", "test")
                                                                for n in names)
    rows = [head]
    for model, m in metrics.items():
        cells = [f"{m.get(s, {}).get(n, float('nan')):14.4f}" for s in ("dev", "test") for n in names]
        rows.append(f"{model:16s} {m.get('params', 0) / 1e6:7.2f}M {m.get('latency_ms', float('nan')):7.2f} "
                    + " ".join(cells))
    return "\n".join(rows)


def _ablate(args) -> int:
    from elasticlm.commands.run import build_config
    from elasticlm.experiment.ablation import ablate

    cfg = build_config(args)
    res = ablate(cfg, Path(args.out), variants=args.variants, seeds=args.seeds)
    print(f"ablation table: {Path(args.out) / 'ablation.json'}")
    for row in res["rows"]:
        print(f"  {row['variant']:16s} dev {row['dev_mean']:.4f} ± {row['dev_std']:.4f}   "
              f"test {row.get('test_mean', float('nan')):.4f} ± {row.get('test_std', float('nan')):.4f}  "
              f"({row['seeds']} seeds)")
    return 0

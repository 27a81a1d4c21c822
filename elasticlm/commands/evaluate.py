"""`elasticlm evaluate`: score a saved model on a task (see `elasticlm.experiment.evaluate`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLE = """examples:
  elasticlm evaluate runs/demo/models/found --task rt-polarity
  elasticlm evaluate runs/demo/export --task ./my-reviews --json scores.json
"""


def register(subparsers) -> None:
    e = subparsers.add_parser("evaluate", help="score a saved classification, regression or QA model on a task's "
                                               "dev/test",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help="a model folder (save_pretrained / export) with its tokenizer")
    e.add_argument("--task", required=True, help="task name or dataset folder")
    e.add_argument("--data-dir", help="folder with GLUE TSVs / SQuAD JSON")
    e.add_argument("--max-length", type=int, default=128, help="tokens per example (default 128)")
    e.add_argument("--json", help="also write the metrics to this file")
    e.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from elasticlm.experiment.evaluate import evaluate_saved

    name, scores = evaluate_saved(args.model, args.task, data_dir=args.data_dir, max_length=args.max_length)
    for split, metrics in scores.items():
        print(f"{name} {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2) + "\n")
    return 0

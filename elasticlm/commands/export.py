"""`elasticlm export`: a run's found model (or any saved elasticlm model) as a folder that loads with
only torch and transformers (see `elasticlm.export`)."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  elasticlm export runs/demo --out exported/demo                 # the run's found model (RUN/models/found)
  elasticlm export runs/demo/models/uniform-bert --out exported/ub --onnx
  elasticlm export runs/demo --out exported/demo --int8 --force  # + model.onnx, model.int8.onnx

Load it anywhere:
  AutoModelForSequenceClassification.from_pretrained("exported/demo", trust_remote_code=True)
  pipeline("text-classification", model="exported/demo", trust_remote_code=True)
The folder holds the weights, the tokenizer, the modeling code, README.md (model card) and export.json
(the checks: reload parity, ONNX parity <= 1e-4, int8 accuracy change and speed-up).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="a trained model as a self-contained HF folder (+ ONNX, int8)",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="RUN_OR_MODEL",
                   help="a run folder (exports models/found) or a saved elasticlm model folder")
    p.add_argument("--out", required=True, help="the export folder (must be new or empty, unless --force)")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (checked against PyTorch)")
    p.add_argument("--int8", action="store_true",
                   help="also write model.int8.onnx (dynamic quantisation; implies --onnx) and measure it")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from elasticlm.export import export_model

    result = export_model(args.source, args.out, onnx=args.onnx, int8=args.int8, force=args.force)
    print(f"{result['class']} from {result['source']}: {result['params']['total']:,} parameters; "
          f"load with {result['auto_class']}.from_pretrained({args.out!r}, trust_remote_code=True)")
    return 0

"""`elasticlm clm pretrain|distill|evaluate|run` and `elasticlm generate MODEL "prompt"`.

Each command builds a `ClmConfig` (defaults, then a YAML `--config`, then options, then key=value
overrides), makes one library call and prints where the result is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from elasticlm.commands.options import add_const, add_fields, build

CLM = "elasticlm.clm.config:ClmConfig"

CLM_EXAMPLES = """examples (each stage's --help has more):
  elasticlm clm run --preset demo --out runs/clm          all stages into one folder
  elasticlm clm pretrain --arch runs/demo/arch.json --out runs/clm/pretrain
  elasticlm clm distill --student runs/clm/pretrain --out runs/clm/distill
  elasticlm clm evaluate --model distilled=runs/clm/distill --out runs/clm/eval
"""
RUN_EXAMPLE = """example:
  elasticlm clm run --preset demo --out runs/clm          pretrain, SFT, MiniLLM, Rouge-L, export (~20 min, 2 cores)
  elasticlm clm run --arch runs/demo/arch.json --instructions ./dolly.jsonl --out runs/clm2 distill.max_steps=200
"""
PRETRAIN_EXAMPLE = """example:
  elasticlm clm pretrain --arch runs/demo/arch.json --corpus ./books/ --out runs/clm/pretrain pretrain.max_steps=2000
"""
DISTILL_EXAMPLE = """example:
  elasticlm clm distill --student runs/clm/pretrain --out runs/clm/distill     # SFT, then MiniLLM
  elasticlm clm distill --student runs/clm/pretrain --sft-only --out runs/clm/sft
"""
EVALUATE_EXAMPLE = """example:
  elasticlm clm evaluate --model distilled=runs/clm/distill --model teacher=teacher --out runs/clm/eval
"""
GENERATE_EXAMPLE = """example:
  elasticlm generate runs/clm/export "Give three tips for staying healthy."
  elasticlm generate runs/clm/found/distill "Write a haiku about rain." --sample --top-p 0.9 --max-new-tokens 40
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("clm", help="causal LMs: pretrain, instruction-tune by MiniLLM distillation, evaluate",
                              epilog=CLM_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="clm_command", metavar="STAGE")
    fmt = argparse.RawDescriptionHelpFormatter

    pre = sub.add_parser("pretrain", help="the architecture as a decoder, next-token loss on a corpus",
                         epilog=PRETRAIN_EXAMPLE, formatter_class=fmt)
    add_fields(pre, CLM, ["corpus", "kd_weight", "kd_hidden_weight"])
    _common(pre)
    pre.set_defaults(func=_pretrain)

    dis = sub.add_parser("distill", help="SFT, then MiniLLM reverse-KL distillation from the causal teacher",
                         epilog=DISTILL_EXAMPLE, formatter_class=fmt)
    dis.add_argument("--student", required=True, help="a pretrained decoder (clm pretrain --out, or a model folder)")
    add_fields(dis, CLM, ["instructions"])
    dis.add_argument("--sft-only", action="store_true", help="stop after supervised fine-tuning")
    _common(dis)
    dis.set_defaults(func=_distill)

    ev = sub.add_parser("evaluate", help="Rouge-L of greedy responses to held-out instructions",
                        epilog=EVALUATE_EXAMPLE, formatter_class=fmt)
    ev.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER",
                    help="a model to score (repeat); FOLDER 'teacher' scores the teacher")
    add_fields(ev, CLM, ["instructions"])
    _common(ev)
    ev.set_defaults(func=_evaluate)

    run = sub.add_parser("run", help="the whole causal pipeline into one folder (resumable)",
                         epilog=RUN_EXAMPLE, formatter_class=fmt)
    add_fields(run, CLM, ["corpus", "instructions"])
    _common(run)
    run.set_defaults(func=_run)

    gen = subparsers.add_parser("generate", help="stream a causal model's reply to a prompt",
                                epilog=GENERATE_EXAMPLE, formatter_class=fmt)
    gen.add_argument("model", help="a causal model folder (export, stage or model folder)")
    gen.add_argument("prompt", help="the prompt (wrapped in the chat template unless --raw)")
    gen.add_argument("--max-new-tokens", type=int, default=64, help="most tokens to generate (default 64)")
    gen.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=1.0, help="with --sample: softmax temperature (default 1.0)")
    gen.add_argument("--top-k", type=int, help="with --sample: draw from the K likeliest tokens only")
    gen.add_argument("--top-p", type=float, help="with --sample: draw from the likeliest tokens that make up P")
    gen.add_argument("--seed", type=int, default=0, help="with --sample: sampling seed (default 0)")
    gen.add_argument("--raw", action="store_true", help="no chat template")
    gen.set_defaults(func=_generate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (rerun into it to resume)")
    add_fields(p, CLM, ["preset", "arch", "teacher"])
    p.add_argument("--config", help="YAML file with ClmConfig fields (e.g. configs/clm-demo.yaml)")
    add_fields(p, CLM, ["seed"])
    add_const(p, "--fp32", "precision", "fp32", "fp32 instead of bf16 autocast")
    add_const(p, "--no-progress", "progress", False, "no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any ClmConfig field, e.g. sft.max_steps=300")


def _config(args):
    from elasticlm.clm.pipeline import ClmConfig

    return build(ClmConfig(), args)


def _pretrain(args) -> int:
    from elasticlm.clm.pipeline import pretrain

    result = pretrain(_config(args), Path(args.out))
    print(f"decoder: {Path(args.out) / 'model'} ({result['steps']} steps, held-out loss {result['heldout_loss']:.3f})")
    return 0


def _distill(args) -> int:
    from elasticlm.clm.pipeline import distill, sft

    cfg, out = _config(args), Path(args.out)
    sft(cfg, args.student, out / "sft")
    if not args.sft_only:
        distill(cfg, out / "sft", out / "distill")
    print(f"student: {out / ('sft' if args.sft_only else 'distill') / 'model'}")
    return 0


def _evaluate(args) -> int:
    from elasticlm.clm.pipeline import evaluate
    from elasticlm.errors import ElasticLMError

    models = {}
    for item in args.model:
        if "=" not in item:
            raise ElasticLMError(f"--model {item!r} must look like NAME=FOLDER (or NAME=teacher)")
        name, where = item.split("=", 1)
        models[name] = where
    scores = evaluate(_config(args), models, Path(args.out))
    print(json.dumps(scores))
    return 0


def _run(args) -> int:
    from elasticlm.clm.pipeline import run

    scores = run(_config(args), Path(args.out))
    print(f"Rouge-L: {json.dumps(scores)}; {Path(args.out) / 'rouge.json'}, {Path(args.out) / 'export'}")
    return 0


def _generate(args) -> int:
    from elasticlm.clm.generate import generate_text

    generate_text(args.model, args.prompt, max_new_tokens=args.max_new_tokens, sample=args.sample,
                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                  chat=not args.raw, stream=True)
    print()
    return 0

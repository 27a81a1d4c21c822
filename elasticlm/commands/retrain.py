"""`elasticlm retrain`: an architecture retrained as a standalone model and evaluated."""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticlm.commands.options import add_const, add_fields, build

RETRAIN = "elasticlm.train.retrain:RetrainConfig"

RETRAIN_EXAMPLE = """examples:
  elasticlm retrain --supernet runs/demo/supernet-ft --arch runs/demo/heads/arch.json --out runs/demo/found
  elasticlm retrain --supernet runs/demo/supernet-ft --arch arch.json --scratch --seeds 0 1 2 --out runs/demo/scratch
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


def _retrain(args) -> int:
    from elasticlm.commands.search import load_arch
    from elasticlm.kinds import KINDS
    from elasticlm.models.folder import load_supernet
    from elasticlm.runtime import run_jobs
    from elasticlm.train.retrain import (RetrainConfig, build_model, prepare_task, retrain_folder, retrain_model,
                                         scratch_net, summarize)

    cfg = build(RetrainConfig(), args)
    cfg.validate()
    net, _ = load_supernet(args.supernet, KINDS)
    arch = net.space.validate(load_arch(args.arch))
    folders = [Path(args.out) / ("" if i == 0 else f"seed-{seed}") for i, seed in enumerate(cfg.seeds)]
    run_config = {"arch": arch.to_list(), "supernet": str(Path(args.supernet).resolve())}
    stage = [retrain_folder(f, cfg, seed=seed, run_config=run_config) for f, seed in zip(folders, cfg.seeds)]
    todo = [folder.done() is None for folder in stage]  # a folder of another run: refused before any work
    data = prepare_task(cfg, vocab_size=net.space.vocab_size, max_positions=net.space.max_position_embeddings,
                        targets=any(todo))  # else no teacher logits are needed
    if any(todo):  # --out is the first seed's folder: claimed before seed-k/ and pretrain/ go into it
        stage[0].claim()

    def job(folder: Path, seed: int, done: bool):
        def train(say) -> dict:
            tell = say if cfg.workers == 1 else (lambda s: say(f"[seed {seed}] {s}"))
            tell(f"-- seed {seed}: {'done' if done else 'retraining'} ({folder}) --")
            src = net if cfg.init == "supernet" or done else scratch_net(
                net.space, arch, data.spec, data.spec.name, seed=seed, teacher_model=data.teacher.model, cfg=cfg,
                say=tell)
            model = None if done else build_model(src, arch, data.spec.name, cfg,
                                                  Path(args.out) / "pretrain" / f"seed-{seed}", say=tell)
            return retrain_model(model, data, cfg, folder, seed=seed, run_config=run_config, say=tell)
        return train

    # the seeds `retrain.workers` at a time (elasticlm.runtime.run_jobs)
    results = run_jobs([job(f, seed, not t) for f, seed, t in zip(folders, cfg.seeds, todo)], cfg.workers,
                       print)
    s = summarize(results)
    for split in ("dev", "test"):
        if split in s:
            std = s.get("std", {}).get(split, {})
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" + (f" ± {std[k]:.4f}" if k in std else "")
                                           for k, v in s[split].items()))
    print(f"model: {args.out} ({s['params'] / 1e6:.2f}M parameters)")
    return 0


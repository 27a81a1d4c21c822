"""`elasticlm run`: the whole pipeline (see `elasticlm.experiment.run`) into one resumable run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from elasticlm.commands.options import add_fields, build

EXAMPLE = """examples:
  elasticlm run --preset demo --out runs/demo            # the embedded default: rt-polarity, ~20 min on 2 cores
  elasticlm run configs/micro.yaml --task sst-2 --data-dir ./glue --out runs/micro
  elasticlm run --preset demo --task ./my-reviews --out runs/mine retrain.seeds=[0,1,2]
  torchrun --nproc_per_node=2 -m elasticlm run --preset demo --out runs/ddp   # data-parallel stages

Rerunning into the same --out resumes: finished stages are skipped, a killed one continues from its
last checkpoint. The run folder holds arch.json, metrics.json, report.md, export/ and one folder per stage.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="the whole pipeline: supernet, search, retraining, baselines, export, report",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML config (configs/*.yaml); applied over the preset's defaults")
    p.add_argument("--preset", help="demo, micro, tiny or small (default: the YAML's, else demo)")
    add_fields(p, "elasticlm.experiment.run:RunConfig", ["task", "teacher", "corpus", ("data-dir", "data_dir"), "seed"])
    p.add_argument("--out", required=True, help="the run folder (rerun into it to resume)")
    p.add_argument("--force", action="store_true", help="delete a run folder made with another config and start over")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any config field, e.g. search.mode=pareto")
    p.set_defaults(func=_run)


def build_config(args):
    """The preset's tree (`elasticlm.presets`), then the YAML file, then the options, then key=value
    overrides."""
    from elasticlm.presets import get_config

    preset = args.preset
    if preset is None and args.config:
        import yaml

        from elasticlm.data.textfile import read_text

        try:
            preset = (yaml.safe_load(read_text(args.config)) or {}).get("preset")
        except Exception:  # the real parse error is reported by apply_yaml below
            preset = None
    return build(get_config(preset or "demo"), args, first=[("preset", args.preset)] if args.preset else [])


def _run(args) -> int:
    from elasticlm.experiment.run import run_pipeline

    cfg = build_config(args)
    metrics = run_pipeline(cfg, Path(args.out), force=args.force)
    found = metrics.get("found", {})
    print(f"run folder: {args.out} (arch.json, metrics.json, report.md, export/)")
    if "test" in found:
        print("found model test: " + ", ".join(f"{k} {v:.4f}" for k, v in found["test"].items()))
    return 0

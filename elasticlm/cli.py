"""`elasticlm` command line: a thin dispatcher.

Each command group is a module of `elasticlm.commands` exposing `register(subparsers)`, which adds
its sub-parser(s) and sets `func` (a callable taking the parsed args and returning an exit code).
User errors (`ElasticLMError`, a missing file) become one line on stderr and exit status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from elasticlm.errors import ElasticLMError

# (module, ...) whose `register(subparsers)` adds a command group. Imported lazily so that
# `elasticlm space` does not pay for importing torch/transformers.
COMMAND_MODULES = (
    "elasticlm.commands.space",
    "elasticlm.commands.data",
    "elasticlm.commands.teacher",
    "elasticlm.commands.supernet",
    "elasticlm.commands.search",     # search, heads
    "elasticlm.commands.retrain",    # retrain
    "elasticlm.commands.evaluate",   # evaluate
    "elasticlm.commands.compare",    # compare
    "elasticlm.commands.rank_check", # rank-check
    "elasticlm.commands.ablate",     # ablate
    "elasticlm.commands.run",        # run (the whole pipeline)
    "elasticlm.commands.config",     # config dump
    "elasticlm.commands.export",     # export
    "elasticlm.commands.report",     # report
    "elasticlm.commands.bench",      # bench
    "elasticlm.commands.clm",        # clm pretrain|distill|evaluate|run, generate
)


EXAMPLES = """examples (each command's --help has more):
  elasticlm run --preset demo --out runs/demo              the whole pipeline, resumable (~20 min on 2 cores)
  elasticlm space --preset small --sample 3                a search space, sampled architectures, counts
  elasticlm data show rt-polarity                          a task: sizes, labels, an example
  elasticlm teacher finetune --task rt-polarity            fine-tune (and cache) the task teacher
  elasticlm supernet pretrain --preset demo --out DIR      stage 1: supernet pretraining with growth
  elasticlm supernet finetune --supernet DIR --out DIR2    stage 2: supernet fine-tuning on a task
  elasticlm search --supernet DIR2 --out DIR3              evolutionary / Pareto search
  elasticlm heads --supernet DIR2 --arch DIR3 --out DIR4   head-number search (CKA)
  elasticlm retrain --supernet DIR2 --arch DIR4/arch.json --out DIR5     the final model
  elasticlm evaluate DIR5 --task rt-polarity               score a saved model
  elasticlm compare runs/demo                              found model vs equal-budget baselines
  elasticlm rank-check runs/demo                           does the supernet's fitness rank as retraining?
  elasticlm ablate --preset demo --out runs/ablate         the ablation grid
  elasticlm export runs/demo --out my-model --onnx         a self-contained HF folder (+ ONNX)
  elasticlm report runs/demo                               report.md with plots
  elasticlm bench --quick                                  the benchmarks, each ratio beside its target
  elasticlm generate MODEL "Once upon a time"              stream text from a causal model
"""


def build_parser() -> argparse.ArgumentParser:
    from elasticlm import __version__
    from elasticlm.commands.options import Parser

    parser = Parser(
        prog="elasticlm",
        description="Elastic architecture search for compact language models (ELM).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"elasticlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:  # a command group not written yet
            if err.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except (ElasticLMError, FileNotFoundError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"elasticlm: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("elasticlm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

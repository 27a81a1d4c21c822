"""`elasticlm report RUN_DIR`: report.md with plots and tables from a run folder's files (see
`elasticlm.report`)."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  elasticlm report runs/demo                        # writes runs/demo/report.md, figures in runs/demo/report/
  elasticlm report runs/demo --out docs/demo.md     # figures in docs/demo/

Works on a partial run too: each section whose files are missing is replaced by a one-line note.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="report.md with plots and tables from a run folder",
                              epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (the --out of elasticlm run)")
    p.add_argument("--out", metavar="FILE", help="where to write the report (default RUN_DIR/report.md); the PNGs "
                                                 "go into the folder named after it")
    p.set_defaults(func=_report)


def _report(args) -> int:
    from elasticlm.report import write_report

    print(write_report(args.run_dir, out=args.out))
    return 0

"""`elasticlm config dump`: a preset's whole run config as YAML (how `configs/*.yaml` are made)."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  elasticlm config dump --preset demo                     # print it
  for p in demo micro tiny small; do elasticlm config dump --preset $p > configs/$p.yaml; done
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("config", help="show a preset's run configuration", epilog=EXAMPLE,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="config_command", metavar="ACTION")
    d = sub.add_parser("dump", help="print a preset's whole run config as YAML (the file configs/PRESET.yaml)",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--preset", default="demo", help="demo, micro, tiny or small (default demo)")
    d.set_defaults(func=_dump)


def _dump(args) -> int:
    from elasticlm.presets import to_yaml

    print(to_yaml(args.preset), end="")
    return 0

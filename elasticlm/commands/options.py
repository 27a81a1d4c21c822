"""Command-line options made from config dataclasses: the flag's type and help come from the field's
annotation and the docstring under it, so no command keeps a hand table of flags.

    add_fields(parser, "elasticlm.train.supernet:PretrainConfig",
               ["corpus", "train.epochs", ("grow-every", "growth.every")])
    add_const(parser, "--fp32", "train.precision", "fp32", "train in fp32")
    build(cfg, args)          the YAML `--config`/CONFIG file, then the options, then KEY=VALUE overrides

`Parser` is the CLI's ArgumentParser: a KEY=VALUE word may stand anywhere on the line (after `--out`
too), and a CONFIG positional holding `=` is taken as the first override.
"""

from __future__ import annotations

import argparse
import ast
from functools import lru_cache
from pathlib import Path
from typing import Any

DEST = "set:"  # options that set a config field keep their value under "set:<dotted.path>"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose KEY=VALUE positional (`overrides`) takes such words from anywhere."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, "overrides"):
            return namespace, extras
        late = [a for a in extras if "=" in a and not a.startswith("-")]
        first = []
        config = getattr(namespace, "config", None)
        if config and "=" in config and any(a.dest == "config" for a in self._get_positional_actions()):
            namespace.config, first = None, [config]  # `run --out x a=b`: the CONFIG slot took an override
        namespace.overrides = [*first, *(namespace.overrides or []), *late]
        return namespace, [a for a in extras if a not in late]


@lru_cache(maxsize=None)
def _module(module: str) -> ast.Module:
    """The parsed source of elasticlm module `module`, read without importing it (no torch at parse time)."""
    root = Path(__file__).resolve().parents[2]
    return ast.parse((root / (module.replace(".", "/") + ".py")).read_text())


def _class(ref: str) -> tuple[str, ast.ClassDef]:
    """(module, class node) of `"module:Class"`, following `from X import Class` lines."""
    module, name = ref.split(":")
    for node in _module(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            return _class(f"{node.module}:{name}")
    raise KeyError(ref)


def field_info(ref: str, path: str) -> tuple[ast.expr, str]:
    """(annotation node, docstring) of the field at dotted `path` of the dataclass `"module:Class"`."""
    module, cls = _class(ref)
    *parents, name = path.split(".")
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if node.target.id == (parents[0] if parents else name):
            if parents:
                return field_info(f"{module}:{ast.unparse(node.annotation)}", ".".join([*parents[1:], name]))
            after = body[i + 1] if i + 1 < len(body) else None
            doc = after.value.value if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) else ""
            return node.annotation, " ".join(str(doc).split())
    raise KeyError(f"{ref} has no field {path}")


def _int(text: str) -> int:
    """An integer, also written as 1e6."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


TYPES = {"int": _int, "float": float, "str": str}
METAVARS = {_int: "N", float: "X"}


def _parse_type(annotation: ast.expr):
    """The argparse type and nargs for a field's annotation (`X | None` as X, `list[X]` as X...)."""
    if isinstance(annotation, ast.BinOp):  # X | None
        (annotation,) = [a for a in (annotation.left, annotation.right)
                         if not (isinstance(a, ast.Constant) and a.value is None)]
    if isinstance(annotation, ast.Subscript):  # list[X]
        return TYPES[ast.unparse(annotation.slice)], "+"
    return TYPES[ast.unparse(annotation)], None


def add_fields(parser: argparse.ArgumentParser, ref: str, paths: list) -> None:
    """One `--flag` per field path of the dataclass `ref` ("module:Class"; a path, or a (flag, path) pair):
    the flag is the path's last part with dashes, its help the field's docstring."""
    for item in paths:
        flag, path = item if isinstance(item, tuple) else (item.rsplit(".", 1)[-1].replace("_", "-"), item)
        annotation, doc = field_info(ref, path)
        kind, nargs = _parse_type(annotation)
        parser.add_argument(f"--{flag}", dest=DEST + path, type=kind, nargs=nargs,
                            metavar=METAVARS.get(kind, flag.upper().replace("-", "_")),
                            help=doc.replace("%", "%%"))


def add_const(parser: argparse.ArgumentParser, flag: str, path: str, value: Any, help: str) -> None:
    """A switch `flag` that sets the field `path` to `value`."""
    parser.add_argument(flag, dest=DEST + path, action="store_const", const=value, help=help)


def values(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(path, value) of every field option given on the command line."""
    return [(k[len(DEST):], v) for k, v in vars(args).items() if k.startswith(DEST) and v is not None]


def build(cfg, args: argparse.Namespace, first: list[tuple[str, Any]] = ()):
    """`cfg` with the YAML file (`--config` or the CONFIG positional), the options (`first`, then those
    of `add_fields`/`add_const`), then the KEY=VALUE overrides applied."""
    from elasticlm.config import apply_yaml, assign, override

    if getattr(args, "config", None):
        cfg = apply_yaml(cfg, args.config)
    return override(assign(cfg, [*first, *values(args)]), list(getattr(args, "overrides", None) or []))


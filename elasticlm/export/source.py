"""The modeling code that travels with an exported model (docs: README, "Export").

`copy_modeling_code(folder)` writes `elasticlm.models.modeling` and every elasticlm module it
imports, transitively, into `folder` as flat, self-contained files, read from the installed package
at export time (so an export always carries the code that built the model):

    modeling_elasticlm.py        elasticlm/models/modeling.py (the config and model classes)
    elasticlm_<path>.py          each module it needs, e.g. elasticlm_models_blocks.py, elasticlm_space.py

Imports of elasticlm modules are rewritten to relative ones (`from .elasticlm_space import ...`),
which transformers' remote-code loader follows and copies; names imported from a package's
`__init__` are resolved to the module that defines them. Module-level `Auto*.register(...)` calls are
dropped: in the export, `config.json`'s `auto_map` points the Auto classes at these files, and
registering the model type again would change what an elasticlm installation's Auto classes load.
The result is checked: every absolute import left must be the standard library, torch or
transformers (or their own dependencies), else the export fails.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "elasticlm"
ENTRY = "elasticlm.models.modeling"
"""The module that defines the config and the model classes."""
MAIN_FILE = "modeling_elasticlm"
"""Its file name (without .py) in the export; `auto_map` entries are `modeling_elasticlm.<Class>`."""
ALLOWED_IMPORTS = frozenset({"torch", "transformers", "numpy", "safetensors", "tokenizers", "huggingface_hub",
                             "typing_extensions"})
"""Top-level packages (besides the standard library) the exported code may import: torch,
transformers and what installing them brings."""


@dataclass
class CopiedCode:
    """What `copy_modeling_code` wrote."""

    files: dict[str, str] = field(default_factory=dict)
    """Exported file name -> the elasticlm module it was copied from."""
    dropped: list[str] = field(default_factory=list)
    """Module-level statements left out (the Auto-class registration), as `module:line`."""


def flat_name(module: str) -> str:
    """The export's file name (without .py) for an elasticlm module."""
    if module == ENTRY:
        return MAIN_FILE
    return "elasticlm_" + module.removeprefix(PACKAGE + ".").replace(".", "_")


def _is_elasticlm(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _absolute(node: ast.ImportFrom, module: str) -> str | None:
    """The absolute module name an ImportFrom refers to (relative imports resolved)."""
    if node.level == 0:
        return node.module
    package = module if _is_package(module) else module.rpartition(".")[0]
    base = package.split(".")
    if node.level - 1 > len(base) - 1:
        raise RuntimeError(f"{module}:{node.lineno}: relative import beyond the top-level package")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _defining_module(package: str, name: str, where: str) -> str:
    """The elasticlm module that defines `name`, imported from `package` (a package __init__)."""
    if importlib.util.find_spec(f"{package}.{name}") is not None:
        raise RuntimeError(f"{where}: imports the module {package}.{name} as an object, which the exported "
                           f"code cannot carry; import the names it needs from it instead")
    obj = getattr(importlib.import_module(package), name)
    owner = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
    if not owner or not _is_elasticlm(owner):
        raise RuntimeError(f"{where}: {name} from {package} is not a class or function defined in elasticlm; "
                           f"import it from the module that defines it")
    return owner


def _rewrite_import(node: ast.ImportFrom, module: str, target: str) -> tuple[list[str], set[str]]:
    """New import lines (relative) for `from <target> import ...` and the modules they need."""
    where = f"{module}:{node.lineno}"
    groups: dict[str, list[str]] = {}
    for alias in node.names:
        if alias.name == "*":
            raise RuntimeError(f"{where}: `from {target} import *` cannot be exported; name what it imports")
        owner = _defining_module(target, alias.name, where) if _is_package(target) else target
        groups.setdefault(owner, []).append(alias.name if alias.asname is None else f"{alias.name} as {alias.asname}")
    lines = [f"from .{flat_name(owner)} import {', '.join(names)}" for owner, names in groups.items()]
    return lines, set(groups)


def _is_registration(node: ast.stmt) -> bool:
    """A module-level `X.register(...)` call, or a for loop made only of them."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Attribute) and func.attr == "register"
    if isinstance(node, ast.For):
        return all(_is_registration(s) for s in node.body) and not node.orelse
    return False


def _convert(module: str) -> tuple[str, set[str], list[str]]:
    """(the rewritten source of `module`, the elasticlm modules it imports, dropped statements)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise RuntimeError(f"cannot find the source of {module}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    edits: list[tuple[int, int, list[str]]] = []  # (first line, last line) 1-based, replacement lines
    needs: set[str] = set()
    dropped: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_elasticlm(a.name) for a in node.names):
            raise RuntimeError(f"{module}:{node.lineno}: `import elasticlm...` cannot be exported; "
                               f"use `from elasticlm.<module> import <name>`")
        if not isinstance(node, ast.ImportFrom):
            continue
        target = _absolute(node, module)
        if not target or not _is_elasticlm(target):
            continue
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        if first[: node.col_offset].strip() or last[node.end_col_offset:].strip().split("#")[0].strip():
            raise RuntimeError(f"{module}:{node.lineno}: put the elasticlm import on lines of its own to export it")
        new, owners = _rewrite_import(node, module, target)
        needs |= owners
        indent = " " * node.col_offset
        edits.append((node.lineno, node.end_lineno, [indent + line + "\n" for line in new]))
    for node in tree.body:
        if _is_registration(node):
            edits.append((node.lineno, node.end_lineno,
                          ["# (Auto-class registration left out: config.json's auto_map points here.)\n"]))
            dropped.append(f"{module}:{node.lineno}")
    for first, last, new in sorted(edits, reverse=True):
        lines[first - 1: last] = new
    return "".join(lines), needs, dropped


def copy_modeling_code(folder: str | Path, *, version: str | None = None) -> CopiedCode:
    """Write the modeling code (see the module docstring) into `folder`; returns what was written."""
    folder = Path(folder)
    if version is None:
        from elasticlm import __version__ as version
    copied = CopiedCode()
    todo, seen = [ENTRY], {ENTRY}
    while todo:
        module = todo.pop()
        text, needs, dropped = _convert(module)
        copied.dropped += dropped
        rel = module.replace(".", "/") + ".py"
        header = (f"# Copied from {rel} (elasticlm {version}) by `elasticlm export`: imports of elasticlm\n"
                  f"# modules made relative, so that this folder needs only torch and transformers.\n")
        path = folder / f"{flat_name(module)}.py"
        path.write_text(header + text, encoding="utf-8")
        copied.files[path.name] = module
        for dep in sorted(needs - seen):
            seen.add(dep)
            todo.append(dep)
    check_imports(folder, copied.files)
    return copied


def check_imports(folder: Path, files) -> None:
    """Every absolute import in the copied files must be the standard library or ALLOWED_IMPORTS
    (as transformers' remote-code loader sees them, so a missing package fails here, not there)."""
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    names = {Path(f).stem for f in files}
    for name in files:
        for top in get_imports(folder / name):
            if top not in ALLOWED_IMPORTS and top not in sys.stdlib_module_names:
                raise RuntimeError(f"exported {name} imports {top!r}, which a torch + transformers environment "
                                   f"lacks; the modeling code must not need it")
        for rel in get_relative_imports(folder / name):
            if rel not in names:
                raise RuntimeError(f"exported {name} imports .{rel}, which was not copied")

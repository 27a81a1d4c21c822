"""Imports point down the declared layers (`LAYERS`), the torch-free layers import no torch, no
module is part of an import cycle; the CLI turns only user errors into one line and every command's
help says how to use it."""

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from elasticlm import cli
from elasticlm.errors import ElasticLMError

PKG = Path(__file__).resolve().parent.parent / "elasticlm"


@dataclass(frozen=True)
class Layer:
    """One layer of the package: units (a package or module and everything under it; the longest
    unit that names a module owns it) that may import each other and any lower layer, never a higher one."""

    name: str
    units: tuple[str, ...]
    torch_free: bool = False
    """Its modules import neither torch nor transformers, and only modules of torch-free layers."""


# The layers of elasticlm, bottom to top (the README's "How the code is laid out").
LAYERS = [
    Layer("base", ("elasticlm", "elasticlm.errors", "elasticlm.io"), torch_free=True),
    Layer("plain data", ("elasticlm.space", "elasticlm.space_presets", "elasticlm.space_sampling", "elasticlm.config",
                         "elasticlm.data.cache", "elasticlm.data.textfile", "elasticlm.stage_folder",
                         "elasticlm.run_layout"),
          torch_free=True),
    Layer("runtime", ("elasticlm.runtime",)),
    Layer("data", ("elasticlm.data",)),
    Layer("models", ("elasticlm.models",)),
    Layer("model analysis and distillation", ("elasticlm.analysis", "elasticlm.distill")),
    Layer("task kinds", ("elasticlm.kinds",)),
    Layer("training", ("elasticlm.train",)),
    Layer("search and export", ("elasticlm.search", "elasticlm.export")),
    Layer("causal LM and benchmarks", ("elasticlm.clm", "elasticlm.bench")),
    Layer("report", ("elasticlm.report",), torch_free=True),
    Layer("experiments", ("elasticlm.presets", "elasticlm.experiment")),
    Layer("commands", ("elasticlm.commands",)),
    Layer("entry points", ("elasticlm.cli", "elasticlm.__main__")),
]

# Imports that break the rules on purpose: (importer, imported).
DELIBERATE = {
    # `import elasticlm` registers the model classes with transformers lazily: the first lookup of the
    # "elasticlm" model type imports elasticlm.models (inside a function, so the import stays torch-free)
    ("elasticlm", "elasticlm.models"),
}

# Imports that break the rules today and are to be fixed (issue 15): (importer, imported). An entry
# that no longer occurs fails `test_known_violations_still_occur`; take it out then.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _is_main_guard(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def imports(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports (at module level or inside functions; not under `if __name__ ==
    "__main__"`, a script's entry point). `from pkg import sub` counts as importing the module pkg.sub."""
    out = set()
    stack = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        if _is_main_guard(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out.update(subs or {node.module})
            if len(subs) < len(node.names):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


PATHS = {module_name(p): p for p in PKG.rglob("*.py")}
ALL_IMPORTS = {name: imports(path, set(PATHS)) for name, path in PATHS.items()}
MODULES = {name: {d for d in deps if d.split(".")[0] == "elasticlm"} for name, deps in ALL_IMPORTS.items()}
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer.units}


def unit_of(module: str) -> str:
    """The most specific unit of the table that holds `module` (the root unit holds only itself)."""
    units = [u for u in LEVEL if module == u or (u != "elasticlm" and module.startswith(u + "."))]
    assert units, f"{module} is in no layer: add it (or its package) to LAYERS in tests/test_layering.py"
    return max(units, key=len)


def test_every_unit_in_the_table_exists_once():
    units = [u for layer in LAYERS for u in layer.units]
    assert len(units) == len(set(units))
    for unit in units:
        assert unit in PATHS, f"LAYERS names {unit}, which is not a module of elasticlm"


def test_imports_point_down_the_layers():
    bad = []
    for name, deps in MODULES.items():
        here = LEVEL[unit_of(name)]
        for dep in deps:
            there = LEVEL[unit_of(dep)]
            if there > here and (name, dep) not in DELIBERATE | KNOWN_VIOLATIONS:
                bad.append(f"{name} ({LAYERS[here].name}) imports {dep} ({LAYERS[there].name})")
    assert not bad, "imports that point up the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    """No module is part of an import cycle (the modules of one layer may import each other)."""
    graph = {name: {d for d in deps if d in MODULES and (name, d) not in KNOWN_VIOLATIONS}
             for name, deps in MODULES.items()}
    done: set[str] = set()

    def visit(node, stack):
        assert node not in stack, "import cycle: " + " -> ".join([*stack[stack.index(node):], node])
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*stack, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_known_violations_still_occur():
    for importer, imported in DELIBERATE | KNOWN_VIOLATIONS:
        assert imported in MODULES.get(importer, ()), f"({importer!r}, {imported!r}) no longer occurs: remove it"



def test_search_export_and_the_ablation_load_a_supernet_and_resolve_a_device_without_training():
    """The supernet folder format (`models.folder`) and device/precision/`Dist` (`runtime`) sit below
    training, so loading a trained supernet to search, export or ablate it never imports train/."""
    users = [n for n in MODULES if n.startswith(("elasticlm.search", "elasticlm.export")) or n == "elasticlm.experiment.ablation"]
    bad = [(n, d) for n in users for d in MODULES[n] if d in {"elasticlm.train.supernet", "elasticlm.train.engine"}]
    assert not bad, bad


TORCH_FREE = [name for name in sorted(PATHS) if LAYERS[LEVEL[unit_of(name)]].torch_free]


def test_torch_free_layers_import_no_torch():
    assert {"elasticlm.space", "elasticlm.report"} <= set(TORCH_FREE)
    for name in TORCH_FREE:
        heavy = {d.split(".")[0] for d in ALL_IMPORTS[name]} & {"torch", "transformers"}
        assert not heavy, f"{name} imports {heavy}"
        for dep in MODULES[name] - {imported for importer, imported in DELIBERATE if importer == name}:
            assert LAYERS[LEVEL[unit_of(dep)]].torch_free, f"{name} is torch-free but imports {dep}"


def test_torch_free_modules_load_without_torch():
    code = (f"import sys; import {', '.join(TORCH_FREE)}; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_cli_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": [{"kind": "bert"}]}')
    assert cli.main(["space", "--preset", "demo", "--arch", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elasticlm: error: ") and err.count("\n") == 1
    bom = tmp_path / "bom.json"
    bom.write_text("\ufeff" + '{"layers": []}', encoding="utf-8")
    assert cli.main(["space", "--preset", "demo", "--arch", str(bom)]) == 2
    assert "BOM" not in capsys.readouterr().err and "JSON" not in capsys.readouterr().err
    import elasticlm.commands.space as space_cmd

    def buggy(args):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(space_cmd, "_space", buggy, raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["space", "--preset", "demo"])
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, a: args,
                                                                    "print_help": lambda self: None})())
    args.func = buggy
    with pytest.raises(RuntimeError, match="a real bug"):
        cli.main([])
    args.func = lambda a: (_ for _ in ()).throw(ElasticLMError("fix this"))
    assert cli.main([]) == 2


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) of `parser` and of every command and sub-command under it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def examples(text: str) -> list[str]:
    """The command lines of a help text's "example(s):" section (continuation lines left out)."""
    lines = text.splitlines()
    heads = [i for i, line in enumerate(lines) if re.fullmatch(r"examples?\b.*:", line)]
    if not heads:
        return []
    out = []
    for line in lines[heads[-1] + 1:]:
        if not line.startswith(" "):
            break
        if line.strip().startswith("elasticlm ") or " -m elasticlm " in line:
            out.append(line.strip())
    return out


COMMANDS = list(commands(cli.build_parser()))


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) or "elasticlm" for p, _ in COMMANDS])
def test_every_command_help_says_how_to_use_it(path, parser):
    """`--help` of every command and sub-command formats (argparse %-expands help strings), says what
    every option and argument is for, lists sub-commands with a summary each, and ends with examples
    that run that very command."""
    text = parser.format_help()
    undocumented = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
                    if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
                    and (not a.help or a.help == argparse.SUPPRESS or not a.help.strip())]
    assert not undocumented, f"options without help text: {undocumented}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help for a in action._choices_actions}
            assert set(summaries) == set(action.choices), "sub-commands without a summary line"
            assert all(h and h.strip() for h in summaries.values()), summaries
    lines = examples(text)
    assert lines, f"`elasticlm {' '.join(path)} --help` has no examples section"
    wrong = [line for line in lines if f"elasticlm {' '.join(path)}".strip() not in line]
    assert not wrong, f"examples that run another command: {wrong}"


def test_the_top_help_lists_every_command_with_examples():
    text = cli.build_parser().format_help()
    top = [p[0] for p, _ in COMMANDS if len(p) == 1]
    assert len(top) >= len(cli.COMMAND_MODULES)
    for name in top:
        assert re.search(rf"^    {re.escape(name)}\s+\S", text, re.M), f"{name} is not listed with a summary"
    assert {line.split()[1] for line in examples(text) if line.startswith("elasticlm ")} <= set(top)


@pytest.mark.parametrize("text", ["train: [unclosed\n", "a: b: c\n", "- a list\n"])
def test_bad_yaml_config_is_one_line(tmp_path, capsys, cache, text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert cli.main(["supernet", "pretrain", "--out", str(tmp_path / "out"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"elasticlm: error: {bad}: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()

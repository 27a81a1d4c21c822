"""Imports point down: no library module imports a command module, `distill` never imports `train`,
and `data/` has no import cycle. The CLI turns only user errors into one line."""

import ast
from pathlib import Path

import pytest

from elasticlm import cli
from elasticlm.errors import ElasticLMError

PKG = Path(__file__).resolve().parent.parent / "elasticlm"


def imports(path: Path) -> set[str]:
    """Every elasticlm module `path` imports (at module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("elasticlm"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("elasticlm"))
    return out


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


MODULES = {module_name(p): imports(p) for p in PKG.rglob("*.py")}


def test_no_library_module_imports_a_command():
    for name, deps in MODULES.items():
        if name.startswith("elasticlm.commands") or name in ("elasticlm.cli", "elasticlm.__main__"):
            continue
        assert not any(d.startswith("elasticlm.commands") or d == "elasticlm.cli" for d in deps), name


def test_distill_does_not_import_train():
    for name, deps in MODULES.items():
        if name.startswith("elasticlm.distill"):
            assert not any(d.startswith("elasticlm.train") for d in deps), name


def test_data_has_no_import_cycle():
    data = {n: {d for d in deps if d in MODULES and d.startswith("elasticlm.data.")} for n, deps in MODULES.items()
            if n.startswith("elasticlm.data.")}

    def visit(node, stack):
        assert node not in stack, " -> ".join([*stack, node])
        for dep in data.get(node, ()):
            visit(dep, [*stack, node])

    for name in data:
        visit(name, [])


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


def test_every_command_help_renders():
    """`--help` of every command and sub-command formats (argparse %-expands help strings)."""
    import argparse

    def walk(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    parsers = list(walk(cli.build_parser()))
    assert len(parsers) > len(cli.COMMAND_MODULES)
    for parser in parsers:
        assert parser.format_help()


@pytest.mark.parametrize("text", ["train: [unclosed\n", "a: b: c\n", "- a list\n"])
def test_bad_yaml_config_is_one_line(tmp_path, capsys, cache, text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert cli.main(["supernet", "pretrain", "--out", str(tmp_path / "out"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"elasticlm: error: {bad}: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()

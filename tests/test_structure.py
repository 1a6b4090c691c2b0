"""The import rules of the design, read from every module's syntax tree (not
grepped): the shared package is at the bottom, and the agent and the
coordinator never import each other.

| package | never imports |
|---|---|
| fedlink (shared) | server, agents, bench |
| agents | server |
| server | agents |
| fedlink/rules.py | numpy (the rule language is pure Python: a bare operator install loads it) |
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "fedlink": {"server", "agents", "bench"},
    "agents": {"server"},
    "server": {"agents"},
}


def imported(tree: ast.AST, module: str) -> set[str]:
    """Every module a syntax tree imports, wherever the import is (functions too),
    with relative imports resolved against `module`, the file's dotted path
    (`fedlink.cli.__init__` for a package)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[:-node.level]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def violations(source: str, module: str, forbidden: set[str]) -> set[str]:
    return top_level(imported(ast.parse(source), module)) & forbidden


def broken_modules(root: Path, package: str) -> dict[str, list[str]]:
    """Per module of `package` under `root` that breaks its rule, what it imports that it must not."""
    paths = sorted((root / package).rglob("*.py"))
    assert paths, f"no modules found under {root / package}"
    broken = {}
    for path in paths:
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        bad = violations(path.read_text(encoding="utf-8"), module, FORBIDDEN[package])
        if bad:
            broken[str(path.relative_to(root))] = sorted(bad)
    return broken


def test_the_check_sees_every_kind_of_import():
    snippet = """
import os
import server.store
from agents import config
from bench.harness import BenchSession as B
def later():
    import numpy as np
    from .sibling import thing
    from .. import schema
"""
    seen = imported(ast.parse(snippet), "fedlink.cli.base")
    assert top_level(seen) == {"os", "server", "agents", "bench", "numpy", "fedlink"}
    assert {"fedlink.cli.sibling", "fedlink"} <= seen
    assert imported(ast.parse("from . import base"), "fedlink.cli.__init__") == {"fedlink.cli"}
    assert violations(snippet, "fedlink.x", FORBIDDEN["fedlink"]) == {"server", "agents", "bench"}
    assert violations("import fedlink.schema\nfrom fedlink import audit\n", "agents.x", FORBIDDEN["agents"]) == set()
    # Text that only mentions a package is not an import.
    assert violations('"""import server"""\nx = "from agents import y"\n', "fedlink.x", FORBIDDEN["fedlink"]) == set()


def test_the_check_finds_a_module_that_breaks_the_rule(tmp_path):
    (tmp_path / "fedlink" / "cli").mkdir(parents=True)
    (tmp_path / "fedlink" / "ok.py").write_text("from fedlink import schema\n")
    (tmp_path / "fedlink" / "cli" / "bad.py").write_text("def serve():\n    from server.serve import start\n")
    assert broken_modules(tmp_path, "fedlink") == {"fedlink/cli/bad.py": ["server"]}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_what_the_design_forbids(package):
    assert broken_modules(ROOT, package) == {}, f"{package} must not import {sorted(FORBIDDEN[package])}"


def test_the_rule_language_imports_no_numpy():
    path = ROOT / "fedlink" / "rules.py"
    assert violations(path.read_text(encoding="utf-8"), "fedlink.rules", {"numpy"}) == set()

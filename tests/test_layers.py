"""The layers point one way: api -> service -> engine | codec | audio | text -> leaves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

FORBIDDEN = {
    "demo": ("app.service", "app.api"),
    "codec": ("app.engine", "app.service", "app.api", "app.demo"),
    "audio": ("app.engine", "app.service", "app.api", "app.codec"),
    "text": ("app.engine", "app.service", "app.api", "app.codec", "app.audio"),
    "engine": ("app.service", "app.api", "app.demo"),
    "service": ("app.api", "app.demo"),
}
LEAVES = ("vocab.py", "errors.py", "heap.py")
"""Modules every layer may use, which import nothing of the gateway themselves."""


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_higher_ones(layer: str) -> None:
    files = sorted((APP / layer).glob("*.py"))
    assert files, f"app/{layer} has no modules"
    violations = [
        f"{path.relative_to(APP.parent)} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN[layer])
    ]
    assert not violations, violations


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_of_the_gateway(leaf: str) -> None:
    names = imported_modules(APP / leaf)
    assert not [n for n in names if n == "app" or n.startswith("app.")], names


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from app.api import deps\nimport app.service.speech\n")
    assert {"app.api", "app.service.speech"} <= imported_modules(bad)

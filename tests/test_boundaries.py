"""The package boundaries of ARCHITECTURE.md, checked on the source: the front ends (api, web, cli) never import
each other; sessions knows no HTTP front-end framework; policy does no I/O and knows no storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "ringfence"
FORBIDDEN = {
    "api": ("ringfence.web", "ringfence.cli"),
    "web": ("ringfence.api", "ringfence.cli"),
    "cli": ("ringfence.api", "ringfence.web"),
    "sessions": ("fastapi", "starlette", "ringfence.api", "ringfence.web", "ringfence.cli"),
    "policy": ("sqlalchemy", "ringfence.store", "socket", "asyncio", "httpx", "urllib.request"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not_know(package: str) -> None:
    wrong = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in sorted((SRC / package).rglob("*.py"))
        for name in _imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[package])
    ]
    assert wrong == []

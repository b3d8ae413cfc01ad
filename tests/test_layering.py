"""Imports flow one way (DESIGN.md §2): a stage never imports a stage above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "layerwise"
# top to bottom; a module may import only from its own stage or stages below it
ORDER = ["cli", "api", "serving", "monitoring", "compress", "explain", "evaluation",
         "inference", "rl", "artifact", "training", "models", "data", "tracking", "config",
         "files", "errors"]
LEAVES = {"errors": set(), "config": {"errors"}, "files": {"errors"}}


def stage(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def imported_stages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "layerwise" and len(parts) > 1:
                found.add(parts[1])
    return found


FILES = sorted(p for p in SRC.rglob("*.py") if stage(p) not in ("__init__", "__main__"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_imports_flow_down(path: Path) -> None:
    me = stage(path)
    assert me in ORDER, f"{me} is not placed in the layer order"
    for other in imported_stages(path) - {me}:
        assert other in ORDER, f"{path.name} imports unknown stage {other}"
        if me in LEAVES:
            assert other in LEAVES[me], f"leaf {me} imports {other}"
        elif other != "tracking":
            assert ORDER.index(other) > ORDER.index(me), f"{me} imports {other}, a stage above"


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, f"split these by responsibility: {big}"

"""The shape of the code, pinned: one of each shared piece, small functions, a short loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "layerwise"
FILES = sorted(SRC.rglob("*.py"))


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((str(path.relative_to(SRC)), node))
    return out


def _defining(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return [str(p.relative_to(SRC)) for p in FILES if rx.search(p.read_text(encoding="utf-8"))]


def test_no_function_is_over_60_lines() -> None:
    long = [f"{path}:{fn.lineno} {fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
            for path, fn in _functions() if fn.end_lineno - fn.lineno + 1 > 60]  # type: ignore[operator]
    assert not long, long


def test_the_trainers_epoch_loop_reads_in_one_screen() -> None:
    fns = {fn.name: fn for path, fn in _functions() if path == "training/trainer.py"}
    loop = fns["_run_epoch"]
    assert loop.end_lineno - loop.lineno + 1 <= 40  # type: ignore[operator]


def test_one_of_each_shared_piece() -> None:
    assert _defining(r"^__version__ = ") == ["__init__.py"]
    assert _defining(r"^def atomic_write\(") == ["files.py"]
    # the one safetensors writer (and reader): nobody else imports the library's functions
    assert _defining(r"from safetensors\.torch import") == ["files.py"]
    assert _defining(r"^(class Guard|def \w*nonfinite)") == ["training/guard.py"]
    assert _defining(r"^def (write_history|open_run|seed_all)\(") == \
        ["runs.py", "training/checkpoint.py"]
    assert _defining(r"^MAY_CHANGE = ") == ["training/checkpoint.py"]


def test_the_artifact_does_not_reach_into_training() -> None:
    text = (SRC / "artifact.py").read_text(encoding="utf-8")
    assert "layerwise.training" not in text

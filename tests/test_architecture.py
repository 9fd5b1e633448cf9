"""Imports point one way: ``training`` → ``annotate``, ``training`` → ``dpo_engine``; the engine stands alone,
and so does the artifact store both apps share (``config/artifacts``).

Every import statement of every module counts, the ones inside functions too (a lazy import is
still a dependency), so the rule holds for the code as it runs, not only for its top lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each package (or folder) of ours may not import (its own first-level name or a submodule of it).
FORBIDDEN = {
    "annotate": {"training", "dpo_engine"},
    "config/artifacts": {"annotate", "training", "dpo_engine"},
    "dpo_engine": {"annotate", "training", "config", "django", "django_rq", "rq", "ninja"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(package: str, forbidden: set[str]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    from training.models import ModelVersion\n    return ModelVersion\n")
    assert "training.models" in imported_modules(module)

"""Layering rules: the domain core stays framework-free and test infrastructure stays out."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_PACKAGES = ("indexer", "webhook_service", "dshub")


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def test_indexer_never_imports_flask_at_runtime() -> None:
    code = (
        "import importlib, pkgutil, sys, indexer\n"
        "for m in pkgutil.walk_packages(indexer.__path__, 'indexer.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('flask', 'werkzeug'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_indexer_source_has_no_flask_import() -> None:
    offending = {
        name for name in _imports("indexer") if name.split(".")[0] in ("flask", "werkzeug")
    }
    assert not offending


def test_cli_client_is_importable_without_flask() -> None:
    code = "import sys, dshub.cli; assert 'flask' not in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_production_code_never_imports_tests() -> None:
    for package in PRODUCTION_PACKAGES:
        offending = {name for name in _imports(package) if name.split(".")[0] == "tests"}
        assert not offending, f"{package} imports {offending}"

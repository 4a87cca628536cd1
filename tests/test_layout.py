"""Layering rules: the domain core stays framework-free and test infrastructure stays out."""

from __future__ import annotations

import ast
import os
import re
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


def test_the_core_never_imports_upward() -> None:
    """`indexer/` receives what it needs; it never reaches up into the CLI or the HTTP edge."""
    offending = {
        name for name in _imports("indexer") if name.split(".")[0] in ("dshub", "webhook_service")
    }
    assert not offending, offending


def test_production_code_never_imports_tests() -> None:
    for package in PRODUCTION_PACKAGES:
        offending = {name for name in _imports(package) if name.split(".")[0] == "tests"}
        assert not offending, f"{package} imports {offending}"


_OUTSIDE_PATTERNS = (
    re.compile(r"\.\./shared\b"),
    re.compile(r"ROOT\.parent\b"),
    re.compile(r"DSHUB_SHARED_DIR"),
    re.compile(r"[\"'/]work/(main|shared)\b"),
)
_SCANNED = ("tests", "bench", "deploy", "docs", "dshub", "indexer", "webhook_service", "gitlab-ci")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *_SCANNED, "README.md", "Makefile", ".ci"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = []
    for name in listed:
        if not name or name.startswith(b"tests/fixtures/"):
            continue
        path = ROOT / name.decode()
        if path.suffix in {".py", ".md", ".sh", ".yml", ".yaml", ".toml", ".txt", ""}:
            files.append(path)
    return files


def test_nothing_reads_or_names_a_path_outside_the_repository() -> None:
    offending = []
    for path in _tracked_text_files():
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        text = path.read_text(errors="replace")
        for pattern in _OUTSIDE_PATTERNS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offending.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not offending, "paths outside the repository:\n" + "\n".join(offending)


def test_a_lone_clone_collects_every_test(tmp_path: Path) -> None:
    """The committed tree, cloned alone with nothing beside it, collects without errors."""
    clone = tmp_path / "lone" / "dshub"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(clone)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " error" not in result.stdout.splitlines()[-1], result.stdout[-3000:]


def test_the_core_is_foldered_by_what_it_does() -> None:
    """`indexer/` shows its architecture: every module lives in a folder named for its part
    (ingest, gitlab, data, sync, gc, sites, write, read, store) beside three shared ones."""
    flat = sorted(p.name for p in (ROOT / "indexer").glob("*.py"))
    assert flat == ["__init__.py", "errors.py", "json_input.py", "service_db.py"], flat
    folders = sorted(p.name for p in (ROOT / "indexer").iterdir() if (p / "__init__.py").exists())
    assert folders == ["data", "gc", "gitlab", "ingest", "read", "sites", "store", "sync", "write"]


def test_every_library_production_code_imports_is_declared() -> None:
    """A library the code imports is a dependency in pyproject.toml, not a transitive accident."""
    import tomllib

    declared = {
        re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "dependencies"
        ]
    }
    # import name -> distribution name, where they differ
    distribution = {"PIL": "pillow", "gitlab": "python-gitlab", "yaml": "pyyaml",
                    "dvc_data": "dvc-data", "markdown_it": "markdown-it-py",
                    "prometheus_client": "prometheus-client"}  # fmt: skip
    imported: set[str] = set()
    for package in PRODUCTION_PACKAGES:
        imported |= {name.split(".")[0] for name in _imports(package)}
    third_party = imported - set(sys.stdlib_module_names) - set(PRODUCTION_PACKAGES) - {"_typeshed"}
    missing = sorted(n for n in third_party if distribution.get(n, n).lower() not in declared)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"

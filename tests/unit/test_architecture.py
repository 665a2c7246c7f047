"""The module rules of ARCHITECTURE.md, checked on every test run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("auth", "posts", "images", "payments", "email")


def test_import_linter_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_gateway_uses_domain_interfaces_only():
    """blog/web must not reach into service.py or models.py: it could then tell the modes apart."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "blog" / "web").glob("*.py")
        for name in _imports(path)
        if any(name.startswith(f"blog.{d}.") for d in DOMAINS)
    ]
    assert offenders == []


def test_only_the_composition_root_names_implementations():
    allowed = {ROOT / "blog" / "wiring.py"}
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "blog").rglob("*.py")
        if path not in allowed and path.parent.name not in DOMAINS
        for name in _imports(path)
        if any(name in (f"blog.{d}.service", f"blog.{d}.models") for d in DOMAINS)
    ]
    assert offenders == []

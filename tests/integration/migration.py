"""Helpers for the extract/inline tests: the real config.yaml in a temp dir, the monolith it
describes, and its CLI. Shared by the SQLite, PostgreSQL and MariaDB tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import Result
from flask import Flask

from blog import create_app
from blog.config import load_config
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"config.yaml no longer contains {old!r}"
    return text.replace(old, new)


def write_config(tmp_path: Path, **replacements: str) -> Path:
    """The real, commented config.yaml, in tmp_path (its relative sqlite paths land there too),
    made fast and pointed at ports where nothing listens."""
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    text = _replace(text, "env: development", "env: testing")
    text = _replace(text, "log_level: INFO", "log_level: WARNING")
    text = _replace(text, "bcrypt_rounds: 12", "bcrypt_rounds: 4")
    # the tests' own rate limits: counted in this process, never in the machine's Redis
    text = _replace(text, "storage_url: redis://127.0.0.1:6379/0", "storage_url: memory://")
    text = _replace(text, "register_per_address: 10 per hour", "register_per_address: 1000/second")
    text = _replace(text, "login_per_address: 30 per minute", "login_per_address: 1000/second")
    for port in (3001, 3002, 3003, 3004):
        text = _replace(
            text, f"url: http://127.0.0.1:{port}", f"url: http://127.0.0.1:{free_port()}"
        )
    for old, new in replacements.items():
        text = _replace(text, old, new)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def monolith(config_path: Path) -> Iterator[Flask]:
    """The monolith as ``flask --app blog`` builds it from the file (in whatever mode it says)."""
    app = create_app(load_config(config_path))
    try:
        yield app
    finally:
        app.extensions["blog.runtime"].close()


def run_cli(config_path: Path, *args: str) -> Result:
    with monolith(config_path) as app:
        return app.test_cli_runner().invoke(args=list(args))

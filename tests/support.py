"""Helpers shared by tests that are not fixtures (import them from here, not from conftest)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from blog.config import Config, load_config


def config_overrides(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Config overrides that keep a test's state inside its own tmp_path."""
    overrides: dict[str, Any] = {
        "env": "testing",
        "database_url": f"sqlite:///{tmp_path}/blog.db",
        "log_level": "WARNING",
        "auth": {"bcrypt_rounds": 4},
        "images": {"local_dir": str(tmp_path / "images")},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(overrides.get(key), dict):
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return overrides


def make_config(tmp_path: Path, **extra: Any) -> Config:
    empty = tmp_path / "empty-config.yaml"
    empty.write_text("{}\n")
    return load_config(empty, overrides=config_overrides(tmp_path, **extra))


def require_service(name: str, port: int, how_to_start: str, host: str = "127.0.0.1") -> None:
    """Skip (or, under BLOG_REQUIRE_SERVICES=1, fail) when a real service is not listening."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not reachable on {host}:{port}; start it with: {how_to_start}"
    if os.environ.get("BLOG_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

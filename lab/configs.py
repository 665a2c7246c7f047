"""The configs of the lab's monolith and services: the user's cost settings, throw-away state.

The lab never leaves the machine: whatever the config file says, the benchmarked monolith keeps
payments on the fake provider, email in the inbox, images on local disk and events inline, and
every database and image folder lives in a temporary directory. Everything that shapes the cost
of a call (bcrypt cost, thumbnail size, JPEG quality, page sizes, transport timeouts and retries)
is taken from the config file as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from blog.config import Config, load_config
from blog.domains import HTTP_SERVICES

LAB_LOG_LEVEL = "WARNING"  # no access log on either side: the lab compares stacks, not log I/O


def base_config() -> Config:
    """The config file the user runs (``BLOG_CONFIG`` or ``config.yaml``)."""
    return load_config()


def _plain(section: Any) -> dict[str, Any]:
    """A config section as file-shaped overrides: secrets (env-only fields) left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if "env" in f.metadata or f.metadata.get("internal"):
            continue
        value = getattr(section, f.name)
        out[f.name] = _plain(value) if dataclasses.is_dataclass(value) else value
    return out


def cost_settings(config: Config) -> dict[str, Any]:
    """The configured settings that shape a call's cost, for the monolith and every service:
    the server too (``server:``), so that the lab's services run under the one the user runs."""
    images = _plain(config.images)
    images.pop("local_dir")
    images["storage"] = "local"
    return {
        "server": _plain(config.server),
        "auth": _plain(config.auth),
        "posts": _plain(config.posts),
        "images": images,
        "transport": _plain(config.transport),
        "max_json_bytes": config.max_json_bytes,
        "log_level": LAB_LOG_LEVEL,
    }


LAB_LIMIT = "1000000 per minute"


def unlimited(base: Config) -> dict[str, Any]:
    """The edge's rate limits as configured (the same storage, so a write pays the same Redis
    round trip), but so high that the lab's load never meets them."""
    limits = _plain(base.rate_limits)
    limits.update({name: LAB_LIMIT for name in base.rate_limits.limits()})
    return limits


def monolith_overrides(
    base: Config,
    state: Path,
    services: Mapping[str, str],
    *,
    modes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Overrides of the config file for a lab monolith whose state lives in ``state``.

    ``services`` maps each extracted domain to its service's URL; every other domain runs
    in-process (or in ``modes[domain]``).
    """
    settings = cost_settings(base)
    settings["images"] = {**settings["images"], "local_dir": str(state / "images")}
    return {
        **settings,
        "database_url": f"sqlite:///{state / 'blog.db'}",
        "payments": {"provider": "fake", "stripe_api_base": None},
        "email": {"transport": "inbox"},
        "events": {"broker": "inline"},
        "rate_limits": unlimited(base),
        "services": {
            domain: (
                {"mode": "http", "url": services[domain]}
                if domain in services
                else {"mode": (modes or {}).get(domain, "inprocess")}
            )
            for domain in (*HTTP_SERVICES, "email")
        },
    }


def service_settings(base: Config, domain: str, state: Path) -> dict[str, Any]:
    """The whole config of a lab service whose state (database, images) lives in ``state``:
    the cost settings over the defaults, so nothing else of the user's file (a broker, a
    provider, S3) reaches it."""
    settings = cost_settings(base)
    settings["images"] = {**settings["images"], "local_dir": str(state / "images")}
    return {
        **settings,
        "database_url": f"sqlite:///{state / 'blog.db'}",
        "services": {domain: {"database_url": f"sqlite:///{state / f'{domain}-service.db'}"}},
    }


def lab_config(base: Config, state: Path, services: Mapping[str, str]) -> Config:
    """The config of an in-process lab monolith (see :func:`monolith_overrides`)."""
    return load_config(base.source, overrides=monolith_overrides(base, state, services))


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key at every depth."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(path: Path, settings: Mapping[str, Any], over: str | None = None) -> Path:
    """A config file for a server process: ``settings``, over the file ``over`` when given (a
    server reads one file, so the user's file and the lab's overrides become one)."""
    raw: dict[str, Any] = {}
    if over is not None and Path(over).is_file():
        raw = yaml.safe_load(Path(over).read_text(encoding="utf-8")) or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(merge(raw, settings)), encoding="utf-8")
    return path

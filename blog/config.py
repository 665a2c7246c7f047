"""Load and validate ``config.yaml``.

The file describes the deployment (which domain runs where, which adapters are used); secrets never
live in it. Validation is strict on purpose: a typo in a key or a mode must stop start-up with a
message naming the key and what is allowed, because a silently ignored ``mode: htpp`` would make a
user believe they measured an extraction they never ran.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.yaml"

# Dev defaults: they make a fresh checkout run with no set-up, and production refuses them.
DEV_SECRET_KEY = "dev-flask-secret-key-not-for-production"
DEV_JWT_SECRET = "dev-jwt-secret-not-for-production-0123456789abcdef"
DEV_INTERNAL_TOKEN = "dev-internal-service-token-not-for-production"

Mode = Literal["inprocess", "http", "wire", "extracted"]

SERVER_WORKERS_ENV = "BLOG_SERVER_WORKERS"
"""Set by ``blog.serving`` when it starts a server with another worker count than the config
file's, so that the app knows how many processes share its work."""


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the allowed values."""


@dataclass(frozen=True)
class AuthConfig:
    jwt_issuer: str = "strangler-blog"
    jwt_ttl_seconds: int = 3600
    bcrypt_rounds: int = 12
    jwt_secret: str = field(default=DEV_JWT_SECRET, repr=False, metadata={"env": "BLOG_JWT_SECRET"})


@dataclass(frozen=True)
class PostsConfig:
    per_page_default: int = 20
    per_page_max: int = 100


@dataclass(frozen=True)
class S3Config:
    bucket: str = "strangler-blog"
    prefix: str = "images/"
    region: str = "us-east-1"
    endpoint_url: str | None = None


@dataclass(frozen=True)
class ImagesConfig:
    storage: Literal["local", "s3"] = "local"
    local_dir: str = "instance/images"
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    thumbnail_width: int = 800
    thumbnail_height: int = 600
    jpeg_quality: int = 85
    s3: S3Config = field(default_factory=S3Config)


@dataclass(frozen=True)
class PaymentsConfig:
    provider: Literal["fake", "stripe"] = "fake"
    stripe_api_base: str | None = None
    stripe_api_key: str = field(default="", repr=False, metadata={"env": "STRIPE_API_KEY"})


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    starttls: bool = False
    username: str | None = None
    timeout_seconds: float = 10.0
    password: str = field(default="", repr=False, metadata={"env": "BLOG_SMTP_PASSWORD"})


@dataclass(frozen=True)
class EmailConfig:
    transport: Literal["inbox", "smtp"] = "inbox"
    from_address: str = "Strangler Blog <no-reply@strangler-blog.local>"
    smtp: SmtpConfig = field(default_factory=SmtpConfig)


@dataclass(frozen=True)
class EventsConfig:
    broker: Literal["inline", "rabbitmq"] = "inline"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    exchange: str = "events"
    queue_prefix: str = ""
    prefetch: int = 50
    redelivery_max_attempts: int = 20
    """Inline broker: how often an event a consumer refused is tried, the first time included,
    before the monolith gives up on it (logged, and kept in its table as given up)."""
    redelivery_initial_seconds: float = 1.0
    redelivery_max_seconds: float = 300.0
    """The pause before the next try doubles from the initial one up to this."""
    outbox_retention_seconds: float = 7 * 24 * 3600.0
    """How long a published outbox row is kept before the runtime that publishes deletes it."""
    outbox_cleanup_interval_seconds: float = 60.0
    outbox_cleanup_batch: int = 500
    """Rows deleted per transaction: small enough that a writer never waits long for one."""


@dataclass(frozen=True)
class ServerConfig:
    """The HTTP server under the monolith (``make serve``) and every extracted service."""

    name: Literal["granian", "gunicorn", "waitress"] = "granian"
    workers: int = 2
    threads: int = 8


@dataclass(frozen=True)
class FaultConfig:
    """A fault injected into calls to an extracted domain (see ``blog.transport.faults``)."""

    kind: Literal["latency", "error", "reset", "hang"]
    route: str = "*"
    probability: float = 1.0
    latency_ms: float = 0.0
    status: int = 503


@dataclass(frozen=True)
class ServiceConfig:
    mode: Mode = "inprocess"
    url: str | None = None
    urls: list[str] = field(default_factory=list)
    """``discovery.kind: static``: several instances (``url`` alone is one)."""
    port: int | None = None
    database_url: str | None = None
    faults: list[FaultConfig] = field(default_factory=list)

    def instance_urls(self) -> list[str]:
        return list(self.urls) if self.urls else [self.url] if self.url else []


@dataclass(frozen=True)
class RegistryConfig:
    """etcd, spoken to through its v3 JSON gateway."""

    url: str = "http://127.0.0.1:2379"
    prefix: str = "/strangler-blog/services/"
    lease_seconds: int = 10


@dataclass(frozen=True)
class DnsConfig:
    nameserver: str | None = None
    """``host:port`` of the DNS server to ask; null: the system's resolver."""
    interval_seconds: float = 5.0


@dataclass(frozen=True)
class DiscoveryConfig:
    kind: Literal["static", "registry", "dns"] = "static"
    balancing: Literal["round_robin", "least_outstanding"] = "least_outstanding"
    ejection_seconds: float = 10.0
    """How long an instance that failed is skipped before one call tries it again."""
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)


@dataclass(frozen=True)
class TransportConfig:
    connect_timeout_seconds: float = 0.5
    read_timeout_seconds: float = 5.0
    retries: int = 2
    breaker_failure_rate: float = 0.5
    breaker_window_seconds: float = 10.0
    breaker_minimum_calls: int = 10
    breaker_reset_timeout_seconds: float = 30.0
    keep_alive: bool = True
    """Reuse connections to a service (pooled, HTTP/1.1 keep-alive). ``false`` opens one per call
    and closes it after the answer, as the tutorial's snippets do: each call then pays a TCP
    handshake, one more round trip across a network (the hosts lab shows what that costs)."""
    internal_token: str = field(
        default=DEV_INTERNAL_TOKEN, repr=False, metadata={"env": "BLOG_INTERNAL_TOKEN"}
    )
    """The monolith's own internal credential (``/api/health``'s details), and every service's
    outside production when it has none of its own."""
    service_tokens: dict[str, str] = field(
        default_factory=dict, repr=False, metadata={"internal": True}
    )
    """Each service's own credential, from ``BLOG_INTERNAL_TOKEN_<DOMAIN>`` (see
    :meth:`Config.internal_token`)."""


def service_token_env(domain: str) -> str:
    """The environment variable holding ``domain``'s own internal credential."""
    return f"BLOG_INTERNAL_TOKEN_{domain.upper()}"


MIN_SECRET_BYTES = 32
"""The shortest HS256 key production accepts (RFC 7518 asks for at least the hash's size)."""


RATE_LIMIT_STORAGE_SCHEMES = ("redis", "rediss", "redis+unix", "memory")


@dataclass(frozen=True)
class RateLimitsConfig:
    """Limits at the edge (``blog.web.limits``). Each limit is flask-limiter's notation: one or
    more of ``<count> per <second|minute|hour|day>`` (or ``10/minute``), joined by ``;``."""

    enabled: bool = True
    storage_url: str = "redis://127.0.0.1:6379/0"
    """Where the counts live, shared by every worker and process of the monolith (Redis); if it
    cannot be reached, each process counts in its own memory, and says so at start.
    ``memory://``: per process, on purpose."""
    key_prefix: str = "strangler-blog"
    strategy: Literal["moving-window", "sliding-window-counter", "fixed-window"] = "moving-window"
    login_per_account: str = "10 per minute; 50 per hour"
    login_per_address: str = "30 per minute"
    register_per_address: str = "10 per hour"
    writes_per_user: str = "60 per minute"
    """Posts, edits, deletions, comments, uploads, payments and renames, together."""

    def limits(self) -> dict[str, str]:
        """Every limit, by its key."""
        return {
            name: getattr(self, name)
            for name in (
                "login_per_account",
                "login_per_address",
                "register_per_address",
                "writes_per_user",
            )
        }


def _default_services() -> dict[str, ServiceConfig]:
    """Every domain, in-process, with its extracted form at its declared port."""
    from blog.domains import MANIFESTS

    return {
        m.name: ServiceConfig(port=m.extraction.port, url=f"http://127.0.0.1:{m.extraction.port}")
        for m in MANIFESTS
    }


NETWORK_LINK_KEYS = ("rtt_ms", "jitter_ms", "bandwidth_mbit", "loss_percent")


@dataclass(frozen=True)
class NetworkConfig:
    """The network between the hosts of ``flask --app blog hosts up`` (nothing else reads it):
    what a link to an extracted service's host costs. Loopback on one machine costs a few
    microseconds; these settings put the distance of a real network between the monolith and
    each service (a delay proxy for RTT and jitter, ``tc tbf`` for bandwidth, nftables for loss).
    """

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0
    """A round trip varies within ``rtt_ms ± jitter_ms`` (so at most ``rtt_ms``)."""
    bandwidth_mbit: float | None = None
    """Each direction of the link, in Mbit/s; null: unlimited."""
    loss_percent: float = 0.0
    """Packets dropped at random on each direction of the link (0 to 100, exclusive)."""
    domains: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Per domain, any of the settings above: ``images: {rtt_ms: 10}``."""

    def link(self, domain: str) -> NetworkConfig:
        """The settings of the links to ``domain``'s hosts: its own over the common ones."""
        own = self.domains.get(domain, {})
        return dataclasses.replace(self, **own, domains={})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Config:
    env: Literal["development", "production", "testing"] = "development"
    database_url: str = "sqlite:///instance/blog.db"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_json_bytes: int = 1024 * 1024
    server_timing: bool | None = None
    """Send ``Server-Timing`` (each domain call of a request: the internal call graph)? null:
    everywhere but ``env: production``."""
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False, metadata={"env": "BLOG_SECRET_KEY"})
    auth: AuthConfig = field(default_factory=AuthConfig)
    posts: PostsConfig = field(default_factory=PostsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    payments: PaymentsConfig = field(default_factory=PaymentsConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    services: dict[str, ServiceConfig] = field(default_factory=_default_services)
    source: str = field(default="<defaults>", metadata={"internal": True})

    def mode(self, domain: str) -> str:
        return self.services[domain].mode

    def internal_token(self, domain: str) -> str:
        """``domain``'s own service credential: ``BLOG_INTERNAL_TOKEN_<DOMAIN>``, or, outside
        production only, the shared ``BLOG_INTERNAL_TOKEN``.

        One secret per service, because a service that holds a secret can mint any token signed
        with it: with one shared secret, whoever takes over the images service (it decodes
        hostile files) could call auth and payments as the monolith. Asked for by the processes
        that need it (the monolith for each service it calls, a service for its own), when they
        are built: production refuses to start on the shared fallback.
        """
        token = self.transport.service_tokens.get(domain)
        if token:
            return token
        if self.env == "production":
            raise ConfigError(
                f"{service_token_env(domain)}: required in production (each service has a "
                "credential of its own; the shared BLOG_INTERNAL_TOKEN is refused for it)"
            )
        return self.transport.internal_token

    def server_timing_sent(self) -> bool:
        return self.server_timing if self.server_timing is not None else self.env != "production"

    def service_database_url(self, domain: str) -> str:
        """The extracted service's own database (default: a SQLite file beside the monolith's)."""
        url = self.services[domain].database_url
        return url or f"sqlite:///{PROJECT_ROOT / 'instance' / f'{domain}-service.db'}"


# --------------------------------------------------------------------------- loading


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read the YAML file (``BLOG_CONFIG`` or ``config.yaml``), apply overrides, validate."""
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get("BLOG_CONFIG") or DEFAULT_CONFIG_PATH
    path = Path(path)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
        raw = loaded or {}
    elif "BLOG_CONFIG" in environ and Path(environ["BLOG_CONFIG"]) == path:
        raise ConfigError(f"BLOG_CONFIG points at {path}, which does not exist")
    if overrides:
        raw = _deep_merge(raw, overrides)
    config = _build(Config, raw, "", environ)
    config = _resolve_paths(config, path.parent if path.exists() else PROJECT_ROOT)
    config = dataclasses.replace(
        config,
        source=str(path),
        transport=dataclasses.replace(
            config.transport, service_tokens=_service_tokens(config, environ)
        ),
    )
    workers = environ.get(SERVER_WORKERS_ENV)
    if workers:  # the launcher runs this server with another worker count than the file says
        if not workers.isdigit():
            raise ConfigError(
                f"{SERVER_WORKERS_ENV}: expected a number of workers, got {workers!r}"
            )
        server = dataclasses.replace(config.server, workers=int(workers))
        config = dataclasses.replace(config, server=server)
    _check_semantics(config)
    return config


def _service_tokens(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    return {
        domain: environ[service_token_env(domain)]
        for domain in config.services
        if environ.get(service_token_env(domain))
    }


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _coerce(tp: Any, value: Any, key: str, environ: Mapping[str, str]) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; use {_describe(tp)}")
    if origin in (types.UnionType, typing.Union):
        for option in get_args(tp):
            try:
                return _coerce(option, value, key, environ)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key + ".", environ)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]", environ) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")


def _build(cls: Any, raw: Mapping[str, Any], prefix: str, environ: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    secret_fields = {name for name, f in fields.items() if "env" in f.metadata}
    for key in raw:
        if key in secret_fields:
            env_name = fields[key].metadata["env"]
            raise ConfigError(
                f"{prefix}{key}: secrets do not belong in the config file; set {env_name}"
            )
        if key not in fields:
            allowed = ", ".join(sorted(set(fields) - secret_fields))
            raise ConfigError(f"{prefix}{key}: unknown key; allowed keys here: {allowed}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in secret_fields:
            env_value = environ.get(f.metadata["env"])
            if env_value:
                values[name] = env_value
            continue
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{prefix}{name}: required; expected {_describe(hints[name])}")
            if dataclasses.is_dataclass(hints[name]):
                # an absent section still takes its secrets from the environment
                values[name] = _build(hints[name], {}, f"{prefix}{name}.", environ)
            continue
        if cls is Config and name == "services":
            values[name] = _build_services(raw[name], environ)
        else:
            values[name] = _coerce(hints[name], raw[name], prefix + name, environ)
    return cls(**values)


def _build_services(raw: Any, environ: Mapping[str, str]) -> dict[str, ServiceConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"services: expected a mapping of domains, got {raw!r}")
    services = _default_services()
    for domain, section in raw.items():
        if domain not in services:
            raise ConfigError(f"services.{domain}: unknown domain; allowed: {', '.join(services)}")
        section = section or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"services.{domain}: expected a mapping, got {section!r}")
        defaults = services[domain]
        merged = {"url": defaults.url, "port": defaults.port, **section}
        services[domain] = _build(ServiceConfig, merged, f"services.{domain}.", environ)
    return services


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make ``sqlite:///relative.db`` relative to the config file, not to the shell's cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rel = url[len(prefix) :]
        if rel and rel != ":memory:" and not rel.startswith("file:"):
            return prefix + str((base / rel).resolve())
    return url


def _resolve_paths(config: Config, base: Path) -> Config:
    services = {
        name: dataclasses.replace(
            svc, database_url=_resolve_sqlite(svc.database_url, base) if svc.database_url else None
        )
        for name, svc in config.services.items()
    }
    local_dir = Path(config.images.local_dir)
    if not local_dir.is_absolute():
        local_dir = (base / local_dir).resolve()
    return dataclasses.replace(
        config,
        database_url=_resolve_sqlite(config.database_url, base),
        images=dataclasses.replace(config.images, local_dir=str(local_dir)),
        services=services,
    )


def _check_semantics(config: Config) -> None:
    from blog.domains import BY_NAME
    from blog.manifest import QueueConsumer

    for domain, svc in config.services.items():
        extraction = BY_NAME[domain].extraction
        allowed = ("inprocess", *extraction.modes)
        if svc.mode not in allowed:
            what = (
                "a RabbitMQ consumer"
                if isinstance(extraction, QueueConsumer)
                else "an HTTP service"
            )
            raise ConfigError(
                f"services.{domain}.mode: {svc.mode!r} is not allowed; {domain} runs "
                f"{' or '.join(repr(m) for m in allowed)} (extracted, it is {what})"
            )
        if svc.mode in ("http", "extracted") and not svc.instance_urls():
            raise ConfigError(f"services.{domain}.url: required when mode is '{svc.mode}'")
        for i, url in enumerate(svc.instance_urls()):
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                where = f"services.{domain}.urls[{i}]" if svc.urls else f"services.{domain}.url"
                raise ConfigError(f"{where}: {url!r} is not an http://host[:port] URL")
        for i, fault in enumerate(svc.faults):
            where = f"services.{domain}.faults[{i}]"
            if not 0.0 <= fault.probability <= 1.0:
                raise ConfigError(f"{where}.probability: must be between 0 and 1")
            if fault.latency_ms < 0:
                raise ConfigError(f"{where}.latency_ms: must not be negative")
            if not 400 <= fault.status <= 599:
                raise ConfigError(f"{where}.status: must be an HTTP error status (400..599)")
            routes = {r.method for r in BY_NAME[domain].routes}
            if fault.route != "*" and fault.route not in routes:
                raise ConfigError(
                    f"{where}.route: {fault.route!r} is not a route of {domain}; use '*' or one "
                    f"of {', '.join(sorted(routes))}"
                )
    if config.services["email"].mode == "extracted" and config.events.broker != "rabbitmq":
        raise ConfigError(
            "services.email.mode: 'extracted' needs events.broker: rabbitmq "
            "(the extracted email service is a RabbitMQ consumer)"
        )
    for key, value in (
        ("auth.jwt_ttl_seconds", config.auth.jwt_ttl_seconds),
        ("images.max_upload_bytes", config.images.max_upload_bytes),
        ("images.max_pixels", config.images.max_pixels),
        ("images.thumbnail_width", config.images.thumbnail_width),
        ("images.thumbnail_height", config.images.thumbnail_height),
        ("posts.per_page_max", config.posts.per_page_max),
        ("max_json_bytes", config.max_json_bytes),
    ):
        if value <= 0:
            raise ConfigError(f"{key}: must be a positive number, got {value}")
    settings = config.transport
    if not 0 < settings.breaker_failure_rate <= 1:
        raise ConfigError("transport.breaker_failure_rate: a share of calls, above 0 up to 1")
    if settings.breaker_minimum_calls < 1 or settings.breaker_window_seconds <= 0:
        raise ConfigError(
            "transport.breaker_minimum_calls and breaker_window_seconds: must be positive"
        )
    if not 1 <= config.server.workers <= 64 or not 1 <= config.server.threads <= 256:
        raise ConfigError("server.workers: 1 to 64, server.threads: 1 to 256")
    if config.server.name == "waitress" and config.server.workers != 1:
        raise ConfigError(
            "server.workers: waitress runs one process (its threads serve in parallel); "
            "set server.workers: 1, or pick granian or gunicorn"
        )
    if not 1 <= config.images.jpeg_quality <= 95:
        raise ConfigError("images.jpeg_quality: must be between 1 and 95")
    if not 4 <= config.auth.bcrypt_rounds <= 16:
        raise ConfigError("auth.bcrypt_rounds: must be between 4 and 16")
    if config.payments.provider == "stripe" and not config.payments.stripe_api_key:
        raise ConfigError(
            "payments.provider: 'stripe' needs the STRIPE_API_KEY environment variable"
        )
    _check_events(config.events)
    _check_rate_limits(config.rate_limits)
    _check_network(config.network, set(config.services))
    if config.env == "production":
        _check_production_secrets(config)


def _check_events(events: EventsConfig) -> None:
    if events.redelivery_max_attempts < 1:
        raise ConfigError("events.redelivery_max_attempts: at least 1")
    if not 0 < events.redelivery_initial_seconds <= events.redelivery_max_seconds:
        raise ConfigError(
            "events.redelivery_initial_seconds: above 0, and not above redelivery_max_seconds"
        )
    for key in ("outbox_retention_seconds", "outbox_cleanup_interval_seconds"):
        if getattr(events, key) <= 0:
            raise ConfigError(f"events.{key}: must be a positive number of seconds")
    if events.outbox_cleanup_batch < 1:
        raise ConfigError("events.outbox_cleanup_batch: at least 1 row")


def _check_rate_limits(settings: RateLimitsConfig) -> None:
    from limits import parse_many

    scheme = settings.storage_url.partition("://")[0]
    if scheme not in RATE_LIMIT_STORAGE_SCHEMES or "://" not in settings.storage_url:
        raise ConfigError(
            f"rate_limits.storage_url: {settings.storage_url!r} is not a storage flask-limiter "
            f"runs on here; use a {' or '.join(RATE_LIMIT_STORAGE_SCHEMES)}:// URL"
        )
    for name, value in settings.limits().items():
        try:
            parsed = parse_many(value)
        except ValueError:
            parsed = []
        if not parsed:
            raise ConfigError(
                f"rate_limits.{name}: {value!r} is not a rate limit; write e.g. "
                "'10 per minute' or '5/second; 100/day'"
            )


def _check_network(network: NetworkConfig, domains: set[str]) -> None:
    """The common link and each domain's: numbers in range (``domains`` is an open mapping, so
    its keys and values are checked here rather than by the dataclass)."""
    links: list[tuple[str, Mapping[str, Any]]] = [
        ("network.", {k: getattr(network, k) for k in NETWORK_LINK_KEYS})
    ]
    for domain, own in network.domains.items():
        where = f"network.domains.{domain}"
        if domain not in domains:
            raise ConfigError(f"{where}: unknown domain; allowed: {', '.join(sorted(domains))}")
        if not isinstance(own, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {', '.join(NETWORK_LINK_KEYS)}")
        for key, value in own.items():
            if key not in NETWORK_LINK_KEYS:
                raise ConfigError(
                    f"{where}.{key}: unknown key; allowed keys here: {', '.join(NETWORK_LINK_KEYS)}"
                )
            if isinstance(value, bool) or not (
                isinstance(value, int | float) or (value is None and key == "bandwidth_mbit")
            ):
                raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
        links.append(
            (where + ".", {k: getattr(network.link(domain), k) for k in NETWORK_LINK_KEYS})
        )
    for where, link in links:
        if link["rtt_ms"] < 0 or link["jitter_ms"] < 0:
            raise ConfigError(f"{where}rtt_ms and jitter_ms: must not be negative")
        if link["jitter_ms"] > link["rtt_ms"]:
            raise ConfigError(
                f"{where}jitter_ms: at most rtt_ms (a round trip varies within rtt ± jitter, "
                "and never below zero)"
            )
        if link["bandwidth_mbit"] is not None and link["bandwidth_mbit"] <= 0:
            raise ConfigError(f"{where}bandwidth_mbit: a positive number of Mbit/s, or null")
        if not 0 <= link["loss_percent"] < 100:
            raise ConfigError(f"{where}loss_percent: from 0 up to (not including) 100")


def _check_production_secrets(config: Config) -> None:
    service_tokens = {
        service_token_env(domain): token
        for domain, token in config.transport.service_tokens.items()
    }
    dev_defaults = [
        env
        for value, dev, env in (
            (config.secret_key, DEV_SECRET_KEY, "BLOG_SECRET_KEY"),
            (config.auth.jwt_secret, DEV_JWT_SECRET, "BLOG_JWT_SECRET"),
            (config.transport.internal_token, DEV_INTERNAL_TOKEN, "BLOG_INTERNAL_TOKEN"),
            *((token, DEV_INTERNAL_TOKEN, env) for env, token in service_tokens.items()),
        )
        if value == dev
    ]
    if dev_defaults:
        raise ConfigError(
            "env: production refuses to start on development secrets; set "
            + ", ".join(dev_defaults)
        )
    for env, value in (
        ("BLOG_JWT_SECRET", config.auth.jwt_secret),
        ("BLOG_INTERNAL_TOKEN", config.transport.internal_token),
        *sorted(service_tokens.items()),
    ):
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(f"{env}: must be at least {MIN_SECRET_BYTES} bytes in production")
    holders: dict[str, list[str]] = {}
    for env, value in (
        ("BLOG_INTERNAL_TOKEN", config.transport.internal_token),
        *service_tokens.items(),
    ):
        holders.setdefault(value, []).append(env)
    for names in holders.values():
        if len(names) > 1:
            raise ConfigError(
                f"{', '.join(sorted(names))}: the same secret; each service needs one of its own "
                "(a service holding another's secret could call it as the monolith)"
            )

"""config.yaml validation: every mistake names the key and what is allowed."""

from __future__ import annotations

import pytest

from blog.config import DEV_JWT_SECRET, ConfigError, load_config


def _load(tmp_path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(path, environ=environ or {})


def test_the_shipped_config_is_valid():
    config = load_config(environ={})
    assert config.env == "development"
    assert all(config.mode(d) == "inprocess" for d in config.services)


def test_defaults_work_with_an_empty_file(tmp_path):
    config = _load(tmp_path, "")
    assert config.auth.jwt_secret == DEV_JWT_SECRET
    assert config.database_url.endswith("/instance/blog.db")
    assert config.database_url.startswith(f"sqlite:///{tmp_path}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  imagez: {mode: http}\n", "services.imagez: unknown domain; allowed: auth"),
        ("services:\n  images: {mode: htpp}\n", "services.images.mode: 'htpp' is not allowed"),
        ("services:\n  images: {mode: http, url: null}\n", "services.images.url: required"),
        ("services:\n  email: {mode: http}\n", "services.email.mode: 'http' is not allowed"),
        ("services:\n  auth: {mode: extracted}\n", "services.auth.mode: 'extracted'"),
        ("auth:\n  jwt_ttl_seconds: soon\n", "auth.jwt_ttl_seconds: expected an integer"),
        ("images:\n  storage: ftp\n", "images.storage: 'ftp' is not allowed; use one of"),
        ("images:\n  max_pixels: true\n", "images.max_pixels: expected an integer"),
        ("colour: blue\n", "colour: unknown key"),
        ("auth:\n  jwt_secret: hunter2\n", "auth.jwt_secret: secrets do not belong"),
        ("- a list\n", "the top level must be a mapping"),
        ("payments:\n  provider: stripe\n", "STRIPE_API_KEY"),
        ("services:\n  email: {mode: wire}\n", "email runs 'inprocess' or 'extracted'"),
        ("services:\n  posts: {faults: {kind: error}}\n", "services.posts.faults: expected a list"),
        ("services:\n  posts: {faults: [{kind: slow}]}\n", "faults[0].kind: 'slow' is not allowed"),
        ("services:\n  posts: {faults: [{route: x}]}\n", "faults[0].kind"),
        (
            "services:\n  posts: {faults: [{kind: error, route: upload}]}\n",
            "faults[0].route: 'upload' is not a route of posts; use '*' or one of add_comment",
        ),
        (
            "services:\n  posts: {faults: [{kind: error, probability: 2}]}\n",
            "faults[0].probability: must be between 0 and 1",
        ),
        (
            "services:\n  posts: {faults: [{kind: error, status: 200}]}\n",
            "faults[0].status: must be an HTTP error status",
        ),
    ],
)
def test_wrong_config_names_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as excinfo:
        _load(tmp_path, text)
    assert expected in str(excinfo.value)


def test_secrets_come_from_the_environment(tmp_path):
    config = _load(tmp_path, "", {"BLOG_JWT_SECRET": "x" * 40, "STRIPE_API_KEY": "sk_test_1"})
    assert config.auth.jwt_secret == "x" * 40
    assert config.payments.stripe_api_key == "sk_test_1"
    assert "x" * 40 not in repr(config)


def test_production_refuses_dev_secrets(tmp_path):
    with pytest.raises(ConfigError, match="BLOG_SECRET_KEY, BLOG_JWT_SECRET"):
        _load(tmp_path, "env: production\n")
    strong = {
        "BLOG_SECRET_KEY": "s" * 40,
        "BLOG_JWT_SECRET": "j" * 40,
        "BLOG_INTERNAL_TOKEN": "i" * 40,
    }
    assert _load(tmp_path, "env: production\n", strong).env == "production"
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        _load(tmp_path, "env: production\n", strong | {"BLOG_JWT_SECRET": "short"})


def test_blog_config_picks_the_file(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text("log_level: DEBUG\n")
    assert load_config(environ={"BLOG_CONFIG": str(path)}).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"BLOG_CONFIG": str(tmp_path / "missing.yaml")})


def test_faults_are_read_per_domain(tmp_path):
    config = _load(
        tmp_path,
        "services:\n  images:\n    mode: wire\n    faults:\n"
        "      - {kind: latency, route: upload, latency_ms: 20, probability: 0.5}\n",
    )
    (fault,) = config.services["images"].faults
    assert (fault.kind, fault.route, fault.latency_ms, fault.probability) == (
        "latency",
        "upload",
        20.0,
        0.5,
    )
    assert config.services["posts"].faults == []


def test_the_server_is_chosen_in_config(tmp_path):
    config = _load(tmp_path, "server:\n  name: gunicorn\n  workers: 3\n  threads: 4\n")
    assert (config.server.name, config.server.workers, config.server.threads) == ("gunicorn", 3, 4)
    assert _load(tmp_path, "").server.name == "granian"  # the measured default
    with pytest.raises(ConfigError, match="waitress runs one process"):
        _load(tmp_path, "server:\n  name: waitress\n  workers: 2\n")
    with pytest.raises(ConfigError, match=r"server\.name: 'uwsgi' is not allowed"):
        _load(tmp_path, "server:\n  name: uwsgi\n")
    launched = _load(tmp_path, "server:\n  workers: 3\n", {"BLOG_SERVER_WORKERS": "1"})
    assert launched.server.workers == 1  # what the launcher started wins over the file

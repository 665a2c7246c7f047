"""``extract payments`` onto a MariaDB service database and ``inline`` back: the real payments
service charges on after the moved ids and still honours the idempotency keys it never saw."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select

from blog import create_app
from blog.config import load_config
from blog.domains import manifest
from tests.integration.databases import mariadb_database
from tests.integration.migration import PASSWORD, monolith, run_cli, write_config
from tests.support import ServiceProcess

pytestmark = pytest.mark.mariadb

PAYMENTS = manifest("payments").metadata().tables["payments"]
EMAIL = "payer@example.com"


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh database on the machine's MariaDB, dropped afterwards whatever happened."""
    with mariadb_database() as url:
        yield url


def signup(client: FlaskClient) -> dict[str, str]:
    response = client.post(
        "/api/register", json={"email": EMAIL, "name": "Payer", "password": PASSWORD}
    )
    assert response.status_code in (201, 409), response.get_json()
    response = client.post("/api/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['access_token']}"}


def pay(client: FlaskClient, headers: dict[str, str], key: str, amount: int) -> dict[str, Any]:
    response = client.post(
        "/api/payment",
        json={"amount": amount, "currency": "usd", "payment_method": "pm_card_visa"},
        headers={**headers, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def payment_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(PAYMENTS.c.id).order_by(PAYMENTS.c.id)))


def test_payments_move_to_mariadb_and_back(tmp_path: Path, mysql_url: str) -> None:
    config_path = write_config(
        tmp_path,
        **{"database_url: sqlite:///instance/payments-service.db": f"database_url: {mysql_url}"},
    )
    with monolith(config_path) as app:
        client = app.test_client()
        headers = signup(client)
        first = pay(client, headers, "key-1", 1000)
        second = pay(client, headers, "key-2", 2500)
    assert (first["id"], second["id"]) == (1, 2)

    result = run_cli(config_path, "extract", "payments")
    assert result.exit_code == 0, result.output
    assert "payments       2              0                   2" in result.output

    maria = create_engine(mysql_url)
    sqlite = create_engine(load_config(config_path).database_url)
    try:
        assert payment_ids(maria) == [1, 2]
        assert payment_ids(sqlite) == []

        with ServiceProcess("payments", tmp_path / "svc", service_database_url=mysql_url) as svc:
            config = load_config(
                config_path, overrides={"services": {"payments": {"url": svc.url}}}
            )
            app = create_app(config)
            try:
                assert app.extensions["blog.domains"].modes["payments"] == "http"
                client = app.test_client()
                headers = signup(client)
                third = pay(client, headers, "key-3", 700)
                assert third["id"] == 3
                replayed = pay(client, headers, "key-1", 1000)  # a key only the monolith saw
                assert (replayed["id"], replayed["amount"]) == (1, 1000)
                assert replayed["provider_ref"] == first["provider_ref"]
                fetched = client.get("/api/payments/2", headers=headers)
                assert fetched.status_code == 200
                assert fetched.get_json()["amount"] == 2500
            finally:
                app.extensions["blog.runtime"].close()

        result = run_cli(config_path, "inline", "payments")
        assert result.exit_code == 0, result.output
        assert "payments       3              0                   3" in result.output
        assert payment_ids(maria) == []
        assert payment_ids(sqlite) == [1, 2, 3]
        with monolith(config_path) as app:
            client = app.test_client()
            headers = signup(client)
            assert pay(client, headers, "key-3", 700)["id"] == 3
            assert pay(client, headers, "key-4", 100)["id"] == 4
    finally:
        maria.dispose()
        sqlite.dispose()

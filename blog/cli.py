"""``flask --app blog <command>``: operational commands of the monolith."""

from __future__ import annotations

import click
from flask import Flask, current_app

from blog.web.context import domains


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create every in-process domain's tables (start-up does this too)."""
        click.echo(f"database ready: {current_app.config['BLOG'].database_url}")

    @app.cli.command("reconcile-payments")
    @click.option("--older-than", default=60, show_default=True, help="seconds")
    def reconcile_payments(older_than: int) -> None:
        """Settle payments left pending by a crash between the provider call and the commit."""
        settled = domains().payments.reconcile_pending(older_than_seconds=older_than)
        click.echo(f"settled {settled} pending payment(s)")

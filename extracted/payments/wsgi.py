"""The WSGI entry point for a production server: ``gunicorn extracted.payments.wsgi:app``."""

from extracted.payments.app import create_app

app = create_app()

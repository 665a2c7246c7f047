"""The WSGI entry point for a production server: ``gunicorn extracted.auth.wsgi:app``."""

from extracted.auth.app import create_app

app = create_app()

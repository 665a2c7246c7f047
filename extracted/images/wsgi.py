"""The WSGI entry point for a production server: ``gunicorn extracted.images.wsgi:app``."""

from extracted.images.app import create_app

app = create_app()

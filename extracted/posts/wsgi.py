"""The WSGI entry point for a production server: ``gunicorn extracted.posts.wsgi:app``."""

from extracted.posts.app import create_app

app = create_app()

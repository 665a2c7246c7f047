"""``flask --app extracted.auth run -p 3001`` finds ``create_app`` here."""

from extracted.auth.app import create_app

__all__ = ["create_app"]

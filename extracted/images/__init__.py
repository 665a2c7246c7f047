"""``flask --app extracted.images run -p 3003`` finds ``create_app`` here."""

from extracted.images.app import create_app

__all__ = ["create_app"]

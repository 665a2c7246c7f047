"""``flask --app extracted.payments run -p 3004`` finds ``create_app`` here."""

from extracted.payments.app import create_app

__all__ = ["create_app"]

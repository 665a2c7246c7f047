"""``flask --app extracted.posts run -p 3002`` finds ``create_app`` here."""

from extracted.posts.app import create_app

__all__ = ["create_app"]

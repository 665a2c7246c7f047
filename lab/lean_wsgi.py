"""The lean baseline's WSGI entry point (``lab.lean_wsgi:app``): importing it builds the app on
the database of the config file ``BLOG_CONFIG`` names (see ``lab.lean_app``)."""

from lab.lean_app import create_app

app = create_app()

"""The monolith's WSGI entry point for a production server (``make serve``, or by hand:
``granian --interface wsgi blog.wsgi:app``): importing it starts the monolith. ``make run`` uses
Flask's development server instead, through ``create_app``."""

from blog import create_app
from blog.wiring import serve

app = serve(create_app())

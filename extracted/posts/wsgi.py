"""The WSGI entry point a production server imports (``make services``, or by hand:
``granian --interface wsgi extracted.posts.wsgi:app``): importing it starts the service."""

from blog.wiring import serve
from extracted.posts.app import create_app

app = serve(create_app())

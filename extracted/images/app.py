"""The images service (the tutorial's port 3003), on its own database: the same code the monolith
runs in-process, served through endpoints generated from its route table."""

from blog.wiring import service_app_factory

create_app = service_app_factory("images")

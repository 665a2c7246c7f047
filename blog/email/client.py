"""The extracted email service seen from the monolith: its inbox, over HTTP.

Events do not go through here: with email extracted they travel on RabbitMQ to the worker.
"""

from __future__ import annotations

from typing import Any

from blog.config import TransportConfig
from blog.email import EmailMessage
from blog.errors import Unavailable
from blog.events import Event
from blog.transport import ServiceClient, ServiceCredentials


class EmailUnavailable(Unavailable):
    code = "email_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("email", message)


class HttpEmailClient:
    def __init__(
        self, base_url: str, transport: TransportConfig, credentials: ServiceCredentials
    ) -> None:
        self.transport = ServiceClient(
            "email", base_url, transport, (), EmailUnavailable, credentials
        )

    def handle_event(self, event: Event) -> bool:
        raise TypeError(
            f"event {event.id}: the extracted email service takes events from RabbitMQ only"
        )

    def list_inbox(self, limit: int = 50) -> list[EmailMessage]:
        response = self.transport.call("GET", "/inbox", params={"limit": limit}, idempotent=True)
        return [EmailMessage(**m) for m in response.json()["items"]]

    def health(self) -> dict[str, Any]:
        return self.transport.remote_health()

    def close(self) -> None:
        self.transport.close()

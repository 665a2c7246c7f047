"""The images interface over HTTP: the same methods, DTOs and errors as ``service.py``.

Image URLs are ``image_url(key)`` in both modes, so URLs handed out before the extraction keep
working after it.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any
from urllib.parse import quote

from blog.config import TransportConfig
from blog.images import ERRORS, ImageBlob, ImageNotFound, ImagesUnavailable, StoredImage
from blog.images.storage import ImageStorageError, is_valid_key
from blog.transport import ServiceClient, ServiceCredentials


class HttpImagesClient:
    def __init__(
        self, base_url: str, transport: TransportConfig, credentials: ServiceCredentials
    ) -> None:
        # ImageStorageError lives with the storage backends, not in ERRORS, but the service
        # raises it all the same: map it too, or a failing store would look like a dead service.
        self.transport = ServiceClient(
            "images",
            base_url,
            transport,
            (*ERRORS, ImageStorageError),
            ImagesUnavailable,
            credentials,
        )

    def upload(self, data: bytes, filename: str | None = None) -> StoredImage:
        # Not retried: every upload makes a new key, so a repeat after a lost response would
        # store a duplicate. A filename is always sent: without one the part is a form field,
        # not a file.
        response = self.transport.call(
            "POST",
            "/upload",
            files={"image": (filename or "upload", BytesIO(data), "application/octet-stream")},
            idempotent=False,
        )
        body = response.json()
        return StoredImage(key=body["key"], url=body["url"], size=tuple(body["size"]))

    def get(self, key: str) -> ImageBlob:
        # The service's own first check, made here too: a key it could never have made names no
        # image, and a hostile one ("..", "a/b") could not even travel as one path segment
        # (HTTP clients collapse dot segments). The same error, without the round trip.
        if not is_valid_key(key):
            raise ImageNotFound(f"no image {key!r}")
        # Public on the service (a CDN-style read), so no credential is sent.
        response = self.transport.call(
            "GET", f"/images/{quote(key, safe='')}", idempotent=True, authenticated=False
        )
        content_type = response.headers.get("Content-Type", "application/octet-stream")
        return ImageBlob(
            key=key, content_type=content_type.split(";")[0].strip(), data=response.content
        )

    def health(self) -> dict[str, Any]:
        return self.transport.remote_health()

    def close(self) -> None:
        self.transport.close()

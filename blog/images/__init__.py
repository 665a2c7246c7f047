"""The images domain: validated uploads, resized to a thumbnail and stored as JPEG.

The tutorial's first extraction: CPU-heavy work that should not slow the rest of the blog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from blog.contract import Route
from blog.errors import (
    BadGateway,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from blog.manifest import BuildContext, DomainManifest, HttpService


@dataclass(frozen=True)
class StoredImage:
    """What an upload returns: ``size`` is ``[width, height]`` of the stored thumbnail."""

    key: str
    url: str
    size: tuple[int, int]


@dataclass(frozen=True)
class ImageBlob:
    key: str
    content_type: str
    data: bytes


class InvalidImage(InvalidInput):
    code = "invalid_image"


class UnsupportedImageType(UnsupportedMediaType):
    code = "unsupported_image_type"


class ImageTooLarge(PayloadTooLarge):
    """The upload has too many bytes."""

    code = "image_too_large"


class TooManyPixels(PayloadTooLarge):
    """The image declares more pixels than allowed (a decompression bomb)."""

    code = "image_too_many_pixels"


class ImageNotFound(NotFound):
    code = "image_not_found"


class ImagesUnavailable(Unavailable):
    code = "images_unavailable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__("images", message)


class ImageStorageError(BadGateway):
    """The storage backend failed; not the client's fault, and possibly transient."""

    code = "image_storage_error"


ERRORS = (
    InvalidImage,
    UnsupportedImageType,
    ImageTooLarge,
    TooManyPixels,
    ImageNotFound,
    ImageStorageError,
)

KEY_PATTERN = re.compile(r"[0-9a-f]{32}\.jpg")
"""Keys are made by the service, never by a client: anything else names no image."""


def is_valid_key(key: object) -> bool:
    return isinstance(key, str) and KEY_PATTERN.fullmatch(key) is not None


def image_url(key: str) -> str:
    """The public URL of a stored image; the same in every mode, so old URLs keep working."""
    return f"/api/images/{key}"


class ImagesService(Protocol):
    def upload(self, data: bytes, filename: str | None = None) -> StoredImage: ...

    def get(self, key: str) -> ImageBlob: ...

    def health(self) -> dict[str, object]: ...


def _routes() -> tuple[Route, ...]:
    from blog.images.wire import ImageBlobCodec, MultipartUploadCodec

    return (
        # Not safe: every upload makes a new key, so a repeat after a lost answer would store a
        # duplicate.
        Route("upload", "POST", "/upload", status=201, codec=MultipartUploadCodec),
        # ``path``: any key, even one with a slash, reaches the service and gets the domain's
        # own ImageNotFound. Public: reading an image needs no credential, like a CDN.
        Route("get", "GET", "/images/{key:path}", safe=True, public=True, codec=ImageBlobCodec),
    )


def _build(context: BuildContext) -> ImagesService:
    from blog.images.service import InProcessImagesService
    from blog.images.storage import make_storage

    images = context.config.images
    return InProcessImagesService(context.sessions, images, make_storage(images))


MANIFEST = DomainManifest(
    name="images",
    interface=ImagesService,
    build=_build,
    models="blog.images.models",
    errors=ERRORS,
    unavailable=ImagesUnavailable,
    extraction=HttpService(port=3003, routes=_routes()),
)

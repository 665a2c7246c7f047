"""The images domain: validated uploads, resized to a thumbnail and stored as JPEG.

The tutorial's first extraction: CPU-heavy work that should not slow the rest of the blog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from blog.errors import InvalidInput, NotFound, PayloadTooLarge, Unavailable, UnsupportedMediaType


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


ERRORS = (InvalidImage, UnsupportedImageType, ImageTooLarge, TooManyPixels, ImageNotFound)


def image_url(key: str) -> str:
    """The public URL of a stored image; the same in every mode, so old URLs keep working."""
    return f"/api/images/{key}"


class ImagesService(Protocol):
    def upload(self, data: bytes, filename: str | None = None) -> StoredImage: ...

    def get(self, key: str) -> ImageBlob: ...

    def health(self) -> dict[str, object]: ...

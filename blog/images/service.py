"""The in-process images service: untrusted bytes in, a bounded-size JPEG thumbnail out.

Every upload is decoded by Pillow, so this is the code that meets hostile input first: the
format allow-list, the pixel cap checked against the header before any decoding, and the
mapping of every decoder failure to a 4xx are what keep a crafted file from becoming a 500,
a memory blow-up or a long hang.
"""

from __future__ import annotations

import logging
import unicodedata
import warnings
from io import BytesIO
from uuid import uuid4

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from blog.config import ImagesConfig
from blog.db import transaction
from blog.errors import DomainError, invalid, unstorable_text
from blog.images import (
    ImageBlob,
    ImageNotFound,
    ImagesUnavailable,
    ImageTooLarge,
    InvalidImage,
    StoredImage,
    TooManyPixels,
    UnsupportedImageType,
    image_url,
    is_valid_key,
)
from blog.images.models import ImageRecord
from blog.images.storage import ImageStorage

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
_TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


class InProcessImagesService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        config: ImagesConfig,
        storage: ImageStorage,
    ) -> None:
        self._session_factory = session_factory
        self._config = config
        self._storage = storage

    def upload(self, data: bytes, filename: str | None = None) -> StoredImage:
        """Store first, record second: a failed insert leaves an unreachable file, never a
        row that points at nothing."""
        if len(data) > self._config.max_upload_bytes:
            raise ImageTooLarge(
                f"the image is larger than {self._config.max_upload_bytes} bytes",
                details={"max_bytes": self._config.max_upload_bytes},
            )
        if not data:
            raise InvalidImage("the upload is empty")
        original_filename = _clean_filename(filename)
        jpeg, size, original_format = self._render(data)
        key = f"{uuid4().hex}.jpg"
        self._storage.put(key, jpeg, "image/jpeg")
        try:
            with transaction(self._session_factory) as session:
                session.add(
                    ImageRecord(
                        key=key,
                        width=size[0],
                        height=size[1],
                        size_bytes=len(jpeg),
                        original_format=original_format,
                        original_content_type=Image.MIME.get(original_format, "unknown"),
                        original_filename=original_filename,
                    )
                )
        except SQLAlchemyError as exc:
            logger.exception("stored image %s but could not record it", key)
            raise ImagesUnavailable("could not record the image") from exc
        logger.info(
            "stored image %s (%dx%d, %d bytes, from %s)", key, *size, len(jpeg), original_format
        )
        return StoredImage(key=key, url=image_url(key), size=size)

    def get(self, key: str) -> ImageBlob:
        if not is_valid_key(key):
            raise ImageNotFound(f"no image {key!r}")
        return ImageBlob(key=key, content_type="image/jpeg", data=self._storage.get(key))

    def health(self) -> dict[str, object]:
        database = self._database_ok()
        storage = self._storage.health()
        up = database and storage.get("status") == "ok"
        return {"status": "ok" if up else "down", "database": database, "storage": storage}

    def _database_ok(self) -> bool:
        try:
            with self._session_factory() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError:
            logger.warning("images database is not reachable", exc_info=True)
            return False
        return True

    def _render(self, data: bytes) -> tuple[bytes, tuple[int, int], str]:
        """Decode, normalise and shrink; returns the JPEG, its size and the original format.

        Pillow's bomb warning is escalated locally because our own pixel cap can only run
        after ``Image.open`` has parsed the header, which is where Pillow warns.
        ``catch_warnings`` is process-global, but a lost escalation in a racing thread is
        still caught by the explicit cap below.
        """
        config = self._config
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                with Image.open(BytesIO(data), formats=ALLOWED_FORMATS) as img:
                    original_format = img.format or "UNKNOWN"
                    width, height = img.size
                    if width * height > config.max_pixels:
                        raise _too_many_pixels(config.max_pixels, f"{width}x{height}")
                    # Let the JPEG decoder downscale by a power of two while decoding; the
                    # square box stays large enough whatever the EXIF rotation turns out to be.
                    side = max(config.thumbnail_width, config.thumbnail_height)
                    img.draft(None, (side, side))
                    img.load()
                    # exif_transpose always returns a single-frame copy: animations keep
                    # their first frame only.
                    frame = ImageOps.exif_transpose(img)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                pillow_limit = Image.MAX_IMAGE_PIXELS or config.max_pixels
                raise _too_many_pixels(min(config.max_pixels, pillow_limit), str(exc)) from exc
            except UnidentifiedImageError as exc:
                raise _unidentified(data) from exc
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                logger.info("rejected a corrupt image: %s", exc)
                raise InvalidImage("the image is truncated or corrupt") from exc
        frame = _to_rgb(frame)
        frame.thumbnail((config.thumbnail_width, config.thumbnail_height), Image.Resampling.LANCZOS)
        out = BytesIO()
        frame.save(out, "JPEG", quality=config.jpeg_quality, optimize=True)
        return out.getvalue(), frame.size, original_format


def _too_many_pixels(limit: int, what: str) -> TooManyPixels:
    logger.warning("rejected an image with too many pixels (limit %d): %s", limit, what)
    return TooManyPixels(f"the image has more than {limit} pixels", details={"max_pixels": limit})


def _unidentified(data: bytes) -> DomainError:
    """Tell "an image we refuse" (415) from "not an image at all" (400)."""
    other = _sniff_format(data)
    if other is None:
        return InvalidImage("the upload is not an image")
    return UnsupportedImageType(
        f"{other} images are not supported; use JPEG, PNG, GIF or WebP",
        details={"format": other, "allowed": list(ALLOWED_FORMATS)},
    )


def _sniff_format(data: bytes) -> str | None:
    """Ask every Pillow plugin, header only: nothing is decoded here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(BytesIO(data)) as other:
                return other.format or "unknown"
    except Image.DecompressionBombError:
        return "unknown"  # a huge image of a format we do not take is still an image
    except Exception:  # any plugin may choke on arbitrary bytes: then it is not an image
        return None


def _to_rgb(img: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparent pixels become white rather than black or garbage."""
    if img.mode in _HIGH_BIT_DEPTH_MODES:
        # A plain convert would clip 16-bit samples to 255; scale them into 8 bits instead.
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in _TRANSPARENT_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def _clean_filename(filename: str | None) -> str | None:
    """The client's name for the file, kept as a note (it never names anything on disk).

    What no database can store (a NUL, which PostgreSQL refuses; a lone surrogate) is refused
    with a 400 naming ``filename``, as in every other text field; other control and format
    characters are only dropped (they are harmless there, just noise), and the rest cut to fit
    the column.
    """
    if not filename:
        return None
    if not isinstance(filename, str):
        raise invalid("filename", "must be a string")
    problem = unstorable_text(filename)
    if problem is not None:
        raise invalid("filename", problem)
    cleaned = "".join(ch for ch in filename if unicodedata.category(ch)[0] != "C")
    return cleaned[:255] or None

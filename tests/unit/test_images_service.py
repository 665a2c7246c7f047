"""The in-process images service against real files: a SQLite database and a local directory."""

from __future__ import annotations

import dataclasses
import struct
import time
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session, sessionmaker

from blog.config import ImagesConfig
from blog.db import make_engine, make_session_factory
from blog.images import (
    KEY_PATTERN,
    ImageNotFound,
    ImagesUnavailable,
    ImageTooLarge,
    InvalidImage,
    TooManyPixels,
    UnsupportedImageType,
)
from blog.images.models import ImageRecord, metadata
from blog.images.service import InProcessImagesService
from blog.images.storage import LocalImageStorage, make_storage

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    out = BytesIO()
    img.save(out, fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(BytesIO(data))
    img.load()
    return img


def close_to(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


def png_with_header(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose header claims any size, followed by whatever pixel data we choose."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def zero_rows(width: int, rows: int) -> bytes:
    """Deflated all-black 1-bit rows: a few KB that would inflate to megabytes."""
    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    return b"".join(packer.compress(row) for _ in range(rows)) + packer.flush()


@pytest.fixture
def session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> ImagesConfig:
    return ImagesConfig(local_dir=str(tmp_path / "images"))


@pytest.fixture
def service(session_factory: sessionmaker[Session], config: ImagesConfig) -> InProcessImagesService:
    return InProcessImagesService(session_factory, config, make_storage(config))


def make_service(
    session_factory: sessionmaker[Session], config: ImagesConfig, **changes: int
) -> InProcessImagesService:
    changed = dataclasses.replace(config, **changes)
    return InProcessImagesService(session_factory, changed, LocalImageStorage(changed.local_dir))


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_each_allowed_format_becomes_a_jpeg_thumbnail(
    service: InProcessImagesService, config: ImagesConfig, fmt: str
) -> None:
    stored = service.upload(encode(Image.new("RGB", (1600, 900), RED), fmt), f"photo.{fmt}")

    assert KEY_PATTERN.fullmatch(stored.key)
    assert stored.url == f"/api/images/{stored.key}"
    assert stored.size == (800, 450)
    on_disk = Path(config.local_dir, stored.key).read_bytes()
    img = decode(on_disk)
    assert img.format == "JPEG"
    assert img.mode == "RGB"
    assert img.size == stored.size
    assert close_to(img.getpixel((400, 225)), RED)


def test_a_tall_image_fits_the_box_keeping_its_aspect(service: InProcessImagesService) -> None:
    stored = service.upload(encode(Image.new("RGB", (1000, 3000), BLUE), "PNG"))
    assert stored.size == (200, 600)


def test_a_small_image_is_not_upscaled(service: InProcessImagesService) -> None:
    stored = service.upload(encode(Image.new("RGB", (40, 30), RED), "PNG"))
    assert stored.size == (40, 30)
    assert decode(service.get(stored.key).data).size == (40, 30)


def test_exif_orientation_is_applied(service: InProcessImagesService) -> None:
    img = Image.new("RGB", (200, 100), BLUE)
    img.paste(RED, (0, 0, 100, 100))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"

    stored = service.upload(encode(img, "JPEG", exif=exif.tobytes(), quality=95))

    assert stored.size == (100, 200)
    out = decode(service.get(stored.key).data)
    assert close_to(out.getpixel((50, 20)), RED)  # the left half is now on top
    assert close_to(out.getpixel((50, 180)), BLUE)


def test_transparent_pixels_become_white(service: InProcessImagesService) -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((255, 0, 0, 255), (50, 0, 100, 100))

    out = decode(service.get(service.upload(encode(img, "PNG")).key).data)

    assert close_to(out.getpixel((10, 50)), (255, 255, 255), tolerance=8)
    assert close_to(out.getpixel((90, 50)), RED)


def test_palette_transparency_becomes_white(service: InProcessImagesService) -> None:
    img = Image.new("P", (60, 60), 0)
    img.putpalette([0, 255, 0, *RED] + [0, 0, 0] * 254)
    img.paste(1, (30, 0, 60, 60))

    out = decode(service.get(service.upload(encode(img, "GIF", transparency=0)).key).data)

    assert close_to(out.getpixel((5, 30)), (255, 255, 255), tolerance=8)
    assert close_to(out.getpixel((55, 30)), RED)


def test_an_animated_gif_keeps_its_first_frame(service: InProcessImagesService) -> None:
    frames = [Image.new("RGB", (50, 50), colour) for colour in (RED, BLUE, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)

    out = decode(service.get(service.upload(data).key).data)

    assert close_to(out.getpixel((25, 25)), RED)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(service: InProcessImagesService) -> None:
    img = Image.new("I;16", (20, 20), 0x8000)  # mid grey in 16 bits

    out = decode(service.get(service.upload(encode(img, "PNG")).key).data)

    assert close_to(out.getpixel((10, 10)), (128, 128, 128), tolerance=6)


def test_cmyk_jpeg_comes_out_rgb(service: InProcessImagesService) -> None:
    img = Image.new("CMYK", (30, 30), (0, 255, 255, 0))  # red in CMYK

    out = decode(service.get(service.upload(encode(img, "JPEG")).key).data)

    assert out.mode == "RGB"
    assert close_to(out.getpixel((15, 15)), RED)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("data", [b"", b"this is plain text, not a picture", b"\x00" * 64])
def test_non_images_are_invalid(service: InProcessImagesService, data: bytes) -> None:
    with pytest.raises(InvalidImage) as caught:
        service.upload(data)
    assert caught.value.status == 400


@pytest.mark.parametrize("fmt", ["BMP", "TIFF"])
def test_other_image_formats_are_unsupported(service: InProcessImagesService, fmt: str) -> None:
    with pytest.raises(UnsupportedImageType) as caught:
        service.upload(encode(Image.new("RGB", (10, 10), RED), fmt))
    assert caught.value.status == 415
    assert caught.value.details["format"] == fmt


def test_a_truncated_jpeg_is_invalid(service: InProcessImagesService) -> None:
    noise = Image.effect_noise((400, 400), 64).convert("RGB")
    data = encode(noise, "JPEG", quality=95)
    with pytest.raises(InvalidImage):
        service.upload(data[: len(data) // 2])


def test_too_many_bytes(session_factory: sessionmaker[Session], config: ImagesConfig) -> None:
    small = make_service(session_factory, config, max_upload_bytes=1000)
    with pytest.raises(ImageTooLarge) as caught:
        small.upload(b"\xff" * 1001)
    assert caught.value.status == 413


# Pillow's own bomb warning is silenced here on purpose: the service must not rely on the test
# suite's "warnings are errors" setting to stop a bomb.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("width", "height"),
    [(50_000, 50_000), (12_000, 12_000), (8_000, 6_000)],
    ids=["past-pillow-error", "past-pillow-warning", "past-config-limit"],
)
def test_decompression_bombs_are_refused_from_the_header(
    service: InProcessImagesService, width: int, height: int
) -> None:
    bomb = png_with_header(width, height, zero_rows(width, 2_000))
    assert len(bomb) < 100_000

    started = time.monotonic()
    with pytest.raises(TooManyPixels) as caught:
        service.upload(bomb)

    assert time.monotonic() - started < 2
    assert caught.value.status == 413


def test_the_pixel_limit_comes_from_config(
    session_factory: sessionmaker[Session], config: ImagesConfig
) -> None:
    strict = make_service(session_factory, config, max_pixels=99 * 100)
    with pytest.raises(TooManyPixels):
        strict.upload(encode(Image.new("RGB", (100, 100), RED), "PNG"))
    assert strict.upload(encode(Image.new("RGB", (99, 100), RED), "PNG")).size == (99, 100)


# --------------------------------------------------------------------------- reading back


def test_get_round_trips_the_stored_bytes(
    service: InProcessImagesService, config: ImagesConfig
) -> None:
    stored = service.upload(encode(Image.new("RGB", (64, 48), BLUE), "WEBP"))

    blob = service.get(stored.key)

    assert blob.key == stored.key
    assert blob.content_type == "image/jpeg"
    assert blob.data == Path(config.local_dir, stored.key).read_bytes()


@pytest.mark.parametrize(
    "key",
    [
        "0123456789abcdef0123456789abcdef.jpg",  # well-formed, never stored
        "../../etc/passwd",
        "../t.db",
        "0123456789ABCDEF0123456789ABCDEF.jpg",
        "0123456789abcdef0123456789abcdef.jpg/../../t.db",
        "",
    ],
)
def test_unknown_or_malformed_keys_are_not_found(service: InProcessImagesService, key: str) -> None:
    with pytest.raises(ImageNotFound) as caught:
        service.get(key)
    assert caught.value.status == 404


def test_the_upload_is_recorded(
    service: InProcessImagesService,
    session_factory: sessionmaker[Session],
    config: ImagesConfig,
) -> None:
    filename = "../../" + "a" * 300 + "\x07.png"  # control characters are dropped

    stored = service.upload(encode(Image.new("RGB", (1200, 1200), RED), "PNG"), filename)

    with session_factory() as session:
        record = session.scalars(select(ImageRecord)).one()
    assert record.key == stored.key
    assert (record.width, record.height) == (600, 600)
    assert record.size_bytes == len(Path(config.local_dir, stored.key).read_bytes())
    assert record.original_format == "PNG"
    assert record.original_content_type == "image/png"
    assert record.original_filename == ("../../" + "a" * 300)[:255]
    assert record.created_at is not None
    # The client's name never reaches the disk: only the server-made key does.
    assert sorted(p.name for p in Path(config.local_dir).iterdir()) == [stored.key]


def test_a_failed_record_is_reported_as_unavailable(tmp_path: Path, config: ImagesConfig) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/empty.db")  # no tables created
    broken = InProcessImagesService(make_session_factory(engine), config, make_storage(config))
    try:
        with pytest.raises(ImagesUnavailable):
            broken.upload(encode(Image.new("RGB", (10, 10), RED), "PNG"))
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- health


def test_health_reports_ok(service: InProcessImagesService) -> None:
    assert service.health() == {
        "status": "ok",
        "database": True,
        "storage": {"status": "ok", "backend": "local"},
    }


def test_health_reports_a_dead_database(tmp_path: Path, config: ImagesConfig) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/missing-dir/x.db")
    try:
        service = InProcessImagesService(make_session_factory(engine), config, make_storage(config))
        health = service.health()
    finally:
        engine.dispose()
    assert health["status"] == "down"
    assert health["database"] is False


def test_local_storage_refuses_to_write_a_foreign_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="server-made"):
        LocalImageStorage(tmp_path).put("../evil.jpg", b"x", "image/jpeg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [12_000, 50_000])
def test_pillows_own_bomb_limits_hold_even_when_config_is_looser(
    session_factory: sessionmaker[Session], config: ImagesConfig, side: int
) -> None:
    loose = make_service(session_factory, config, max_pixels=10**10)
    with pytest.raises(TooManyPixels):
        loose.upload(png_with_header(side, side, zero_rows(side, 10)))

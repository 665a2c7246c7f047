"""The images interface behaves the same in-process and over HTTP (a real gunicorn process)."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from blog.errors import PayloadTooLarge
from blog.images import (
    ImageBlob,
    ImageNotFound,
    ImageStorageError,
    ImageTooLarge,
    InvalidImage,
    StoredImage,
    TooManyPixels,
    UnsupportedImageType,
)
from tests.images import image_bytes, png_bomb
from tests.support import deploy

# Small, so "too many bytes" is cheap to send; deploy gives it to the monolith and the service.
MAX_UPLOAD = 200_000
UNKNOWN_KEY = "0123456789abcdef0123456789abcdef.jpg"


@pytest.fixture(scope="module", params=["inprocess", "wire", "http"])
def domains(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("images")
    with deploy("images", request.param, tmp, images={"max_upload_bytes": MAX_UPLOAD}) as built:
        yield built


@pytest.fixture
def images(domains):
    return domains.images


def _fits_thumbnail(size: tuple[int, int]) -> bool:
    return 0 < size[0] <= 800 and 0 < size[1] <= 600


@pytest.mark.parametrize(
    ("fmt", "source", "expected"),
    [("JPEG", (1600, 1200), (800, 600)), ("PNG", (1200, 1600), (450, 600))],
)
def test_upload_and_get_round_trip(images, fmt, source, expected):
    stored = images.upload(image_bytes(fmt, source), filename=f"photo.{fmt.lower()}")
    assert isinstance(stored, StoredImage)
    assert isinstance(stored.size, tuple)
    assert stored.size == expected
    assert _fits_thumbnail(stored.size)
    assert stored.url == f"/api/images/{stored.key}"

    blob = images.get(stored.key)
    assert isinstance(blob, ImageBlob)
    assert (blob.key, blob.content_type) == (stored.key, "image/jpeg")
    with Image.open(io.BytesIO(blob.data)) as img:
        assert (img.format, img.size) == ("JPEG", stored.size)


def test_the_client_filename_never_becomes_the_key(images):
    stored = images.upload(image_bytes("PNG", (40, 30)), filename="../../etc/passwd.png")
    assert "passwd" not in stored.key
    assert images.upload(image_bytes("PNG", (40, 30))).size == (40, 30)  # no filename at all


@pytest.mark.parametrize(
    "key", [UNKNOWN_KEY, "../../config.yaml", "..%2F..%2Fconfig.yaml", "a/b.jpg", "..", "."]
)
def test_unknown_and_traversal_keys_are_not_found(images, key):
    with pytest.raises(ImageNotFound):
        images.get(key)


def test_bad_uploads_are_the_domain_errors(images):
    with pytest.raises(InvalidImage):
        images.upload(b"this is not an image at all", filename="x.jpg")
    with pytest.raises(InvalidImage):
        images.upload(b"", filename="empty.jpg")
    jpeg = image_bytes("JPEG", (400, 300))
    with pytest.raises(InvalidImage):
        images.upload(jpeg[: len(jpeg) // 2], filename="half.jpg")
    with pytest.raises(UnsupportedImageType):
        images.upload(image_bytes("BMP", (40, 30)), filename="x.bmp")
    with pytest.raises(TooManyPixels):
        images.upload(png_bomb(), filename="bomb.png")


@pytest.mark.parametrize("extra", [1, 128 * 1024], ids=["just-over", "far-over"])
def test_too_many_bytes_is_image_too_large(images, extra):
    """Far over, the service's request limit refuses the body before the domain reads it; it
    still answers ImageTooLarge, and the calls right after it still work (gunicorn closes a
    connection whose body it did not read, so the client must not reuse it)."""
    with pytest.raises(ImageTooLarge) as excinfo:
        images.upload(b"\xff" * (MAX_UPLOAD + extra), filename="big.jpg")
    assert isinstance(excinfo.value, PayloadTooLarge)
    assert excinfo.value.details == {"max_bytes": MAX_UPLOAD}
    assert images.health()["status"] == "ok"  # not retried: a reused dead socket would fail it
    assert images.upload(image_bytes("PNG", (40, 30)), filename="next.png").size == (40, 30)


def test_health(images):
    health = images.health()
    assert health["status"] == "ok", health
    assert health["database"] is True
    assert health["storage"]["status"] == "ok"


@pytest.mark.parametrize("mode", ["inprocess", "http"])
def test_a_failing_store_is_image_storage_error(tmp_path, mode):
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("a file where the image folder should be\n")
    with deploy("images", mode, tmp_path, images={"local_dir": str(not_a_dir)}) as built:
        with pytest.raises(ImageStorageError):
            built.images.upload(image_bytes("PNG", (40, 30)), filename="x.png")
        assert built.images.health()["status"] == "down"


def test_images_stored_before_extraction_are_served_after(tmp_path):
    """The service reads the monolith's images.local_dir: old keys and URLs keep working."""
    monolith_dir, service_dir = tmp_path / "monolith", tmp_path / "service"
    monolith_dir.mkdir()
    service_dir.mkdir()
    local_dir = monolith_dir / "images"
    with deploy(
        "images", "inprocess", monolith_dir, images={"local_dir": str(local_dir)}
    ) as monolith:
        stored = monolith.images.upload(image_bytes("JPEG", (1600, 1200)), filename="old.jpg")
        before = monolith.images.get(stored.key).data

    with deploy("images", "http", service_dir, images={"local_dir": str(local_dir)}) as extracted:
        assert extracted.modes["images"] == "http"
        blob = extracted.images.get(stored.key)
        assert blob.data == before
        assert stored.url == f"/api/images/{stored.key}"

        # On the wire: reading is public (CDN-style, cacheable forever), writing is not.
        base_url = extracted.images.health()["instances"][0]["url"]
        served = requests.get(f"{base_url}/images/{stored.key}", timeout=5)
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "image/jpeg"
        assert "immutable" in served.headers["Cache-Control"]
        refused = requests.post(f"{base_url}/upload", files={"image": ("x.jpg", before)}, timeout=5)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "service_unauthorized"

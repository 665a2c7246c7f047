"""The images service on S3, against moto's S3 running as a real HTTP server on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from blog.config import ImagesConfig, S3Config
from blog.db import make_engine, make_session_factory
from blog.images import ImageNotFound, ImageStorageError
from blog.images.models import metadata
from blog.images.service import InProcessImagesService
from blog.images.storage import S3ImageStorage, make_storage

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "NO_PROXY": "127.0.0.1,localhost",
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server per module: stopping it costs half a second (werkzeug's poll interval)."""
    no_files = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as monkeypatch:
        # Fake credentials, and no way to pick up a developer's real AWS profile.
        for name, value in FAKE_AWS_ENV.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(no_files / "config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(no_files / "credentials"))
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def config(endpoint: str) -> ImagesConfig:
    bucket = f"blog-test-{uuid.uuid4().hex[:12]}"
    return ImagesConfig(storage="s3", s3=S3Config(bucket=bucket, endpoint_url=endpoint))


@pytest.fixture
def storage(config: ImagesConfig) -> S3ImageStorage:
    storage = make_storage(config)
    assert isinstance(storage, S3ImageStorage)
    storage.ensure_bucket()
    return storage


@pytest.fixture
def session_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def service(
    session_factory: sessionmaker[Session], config: ImagesConfig, storage: S3ImageStorage
) -> InProcessImagesService:
    return InProcessImagesService(session_factory, config, storage)


def png(size: tuple[int, int]) -> bytes:
    out = BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def test_upload_then_get_through_s3(service: InProcessImagesService, config: ImagesConfig) -> None:
    stored = service.upload(png((1600, 1200)), "cat.png")

    blob = service.get(stored.key)

    assert stored.size == (800, 600)
    assert blob.content_type == "image/jpeg"
    img = Image.open(BytesIO(blob.data))
    assert (img.format, img.size) == ("JPEG", (800, 600))
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=config.s3.endpoint_url)
    head = client.head_object(Bucket=config.s3.bucket, Key=config.s3.prefix + stored.key)
    assert head["ContentType"] == "image/jpeg"
    assert head["ContentLength"] == len(blob.data)


@pytest.mark.parametrize("key", ["0123456789abcdef0123456789abcdef.jpg", "../secret.jpg"])
def test_unknown_keys_are_not_found(service: InProcessImagesService, key: str) -> None:
    with pytest.raises(ImageNotFound):
        service.get(key)


def test_health_is_ok_with_the_bucket(
    service: InProcessImagesService, config: ImagesConfig
) -> None:
    health = service.health()
    assert health["status"] == "ok"
    assert health["storage"] == {"status": "ok", "backend": "s3", "bucket": config.s3.bucket}


def test_a_missing_bucket_is_a_storage_failure_not_a_missing_image(endpoint: str) -> None:
    storage = S3ImageStorage("no-such-bucket-here", "images/", "us-east-1", endpoint)

    assert storage.health()["status"] == "down"
    with pytest.raises(ImageStorageError) as caught:
        storage.get("0123456789abcdef0123456789abcdef.jpg")
    assert caught.value.status == 502


def test_ensure_bucket_is_idempotent_and_works_outside_us_east_1(endpoint: str) -> None:
    storage = S3ImageStorage(f"blog-eu-{uuid.uuid4().hex[:12]}", "", "eu-west-1", endpoint)
    storage.ensure_bucket()
    storage.ensure_bucket()

    key = f"{uuid.uuid4().hex}.jpg"
    storage.put(key, b"jpeg bytes", "image/jpeg")
    assert storage.get(key) == b"jpeg bytes"

"""Where thumbnails live: a local directory (the monolith default) or an S3 bucket.

Both backends accept only server-made keys, so a client-supplied key can never name a path
outside the store.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from blog.config import ImagesConfig
from blog.images import ImageNotFound, ImageStorageError, is_valid_key

logger = logging.getLogger(__name__)

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _checked(key: str) -> str:
    """A key we could never have made names no stored image."""
    if not is_valid_key(key):
        raise ImageNotFound(f"no image {key!r}")
    return key


def _writable(key: str) -> str:
    """Writing under a key we did not make is a programming error, not a client's."""
    if not is_valid_key(key):
        raise ValueError(f"not a server-made image key: {key!r}")
    return key


class ImageStorage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def health(self) -> dict[str, Any]: ...


class LocalImageStorage:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write to a temp file and rename, so a reader never sees half an image."""
        target = self.directory / _writable(key)
        tmp_name: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.directory, prefix=".upload-", suffix=".tmp", delete=False
            ) as tmp:
                tmp_name = tmp.name
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, target)
        except OSError as exc:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)
            logger.exception("could not write image %s to %s", key, self.directory)
            raise ImageStorageError("could not store the image") from exc

    def get(self, key: str) -> bytes:
        try:
            return (self.directory / _checked(key)).read_bytes()
        except FileNotFoundError as exc:
            raise ImageNotFound(f"no image {key!r}") from exc
        except OSError as exc:
            logger.exception("could not read image %s from %s", key, self.directory)
            raise ImageStorageError("could not read the image") from exc

    def health(self) -> dict[str, Any]:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ok = os.access(self.directory, os.W_OK | os.X_OK)
        except OSError:
            ok = False
        return {"status": "ok" if ok else "down", "backend": "local"}


class S3ImageStorage:
    def __init__(
        self, bucket: str, prefix: str, region: str, endpoint_url: str | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        # Bounded timeouts and retries: a slow S3 must not hold an upload worker forever.
        self._client = boto3.client(
            "s3",
            region_name=region,
            endpoint_url=endpoint_url,
            config=BotoConfig(
                connect_timeout=2,
                read_timeout=10,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )
        self._region = region

    def ensure_bucket(self) -> None:
        """Create the bucket if missing; for tests and development, production provisions it."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES | {"NoSuchBucket"}:
                raise ImageStorageError("could not check the image bucket") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self._region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise ImageStorageError("could not create the image bucket") from exc

    def put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + _writable(key),
                Body=data,
                ContentType=content_type,
            )
        except (BotoCoreError, ClientError) as exc:
            logger.exception("could not put image %s in s3://%s", key, self.bucket)
            raise ImageStorageError("could not store the image") from exc

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + _checked(key))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ImageNotFound(f"no image {key!r}") from exc
            logger.exception("could not get image %s from s3://%s", key, self.bucket)
            raise ImageStorageError("could not read the image") from exc
        except BotoCoreError as exc:
            logger.exception("could not get image %s from s3://%s", key, self.bucket)
            raise ImageStorageError("could not read the image") from exc

    def health(self) -> dict[str, Any]:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("image bucket %s is not reachable: %s", self.bucket, exc)
            return {"status": "down", "backend": "s3", "bucket": self.bucket}
        return {"status": "ok", "backend": "s3", "bucket": self.bucket}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def make_storage(config: ImagesConfig) -> ImageStorage:
    if config.storage == "s3":
        s3 = config.s3
        return S3ImageStorage(s3.bucket, s3.prefix, s3.region, s3.endpoint_url)
    return LocalImageStorage(config.local_dir)

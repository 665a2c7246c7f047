"""The two images operations that are not plain JSON on the wire: the upload (multipart in) and
the read (the image's bytes out). Everything else about them is the generic contract's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon
import msgspec
import urllib3

from blog.contract import JSON, Codec, Operation
from blog.errors import invalid, unstorable_text
from blog.httpkit.falcon import send_json
from blog.images import (
    ImageBlob,
    ImageNotFound,
    ImageTooLarge,
    InvalidImage,
    StoredImage,
    is_valid_key,
)
from blog.transport import WireResponse

FIELD = "image"
MULTIPART_FRAMING = 64 * 1024
"""Boundaries and part headers around an upload, on top of the image's own bytes."""
CACHE_FOREVER = "public, max-age=31536000, immutable"
"""Keys are never reused, so a stored image may be cached forever (the tutorial's CDN)."""


class MultipartUploadCodec(Codec):
    """``upload(data, filename)`` as ``multipart/form-data`` with the file in the field
    ``image``, as the tutorial's image service takes it; the answer is the StoredImage."""

    def __init__(self, op: Operation) -> None:
        super().__init__(op)
        self._decoder = msgspec.json.Decoder(StoredImage)

    def encode_request(self, values: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        filename = values.get("filename")
        problem = unstorable_text(filename) if isinstance(filename, str) else None
        if problem is not None:
            # What the service would answer, said here: a lone surrogate cannot even be encoded
            # into the request (JsonCodec refuses its arguments the same way).
            raise invalid("filename", problem)
        # A filename is always sent: without one the part is a form field, not a file.
        part = (filename or "upload", values["data"], "application/octet-stream")
        body, headers["Content-Type"] = urllib3.encode_multipart_formdata({FIELD: part})
        return body

    def decode_response(self, response: WireResponse, values: dict[str, Any]) -> Any:
        return self._decoder.decode(response.content)

    def decode_request(self, req: falcon.Request, path_values: dict[str, str]) -> dict[str, Any]:
        limit = req.context.config.images.max_upload_bytes
        too_large = ImageTooLarge(
            f"the image is larger than {limit} bytes", details={"max_bytes": limit}
        )
        missing = InvalidImage(
            f"send the image as multipart/form-data in the field '{FIELD}'",
            details={"field": FIELD},
        )
        if not (req.content_type or "").lower().startswith(falcon.MEDIA_MULTIPART):
            raise missing
        if req.content_length is not None and req.content_length > limit + MULTIPART_FRAMING:
            # The same "too many bytes" the service's own check reports, said before reading.
            raise too_large
        try:
            for part in req.get_media():
                if part.name == FIELD and part.filename is not None:
                    data = part.stream.read(limit + 1)
                    return {"data": data, "filename": part.filename}
        except falcon.MediaMalformedError:
            raise missing from None
        raise missing

    def encode_response(self, result: Any, resp: falcon.Response) -> None:
        send_json(resp, msgspec.json.encode(result), self.op.route.status)

    def openapi(self, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        form = {
            "type": "object",
            "properties": {
                FIELD: {"type": "string", "contentMediaType": "application/octet-stream"}
            },
            "required": [FIELD],
        }
        return {
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
            "responses": {
                "201": {
                    "description": "stored",
                    "content": {JSON: {"schema": schema(StoredImage)}},
                }
            },
        }


class ImageBlobCodec(Codec):
    """``get(key)`` answered with the image's own bytes and type, cacheable forever."""

    def encode_request(self, values: dict[str, Any], headers: dict[str, str]) -> bytes | None:
        # The service's own first check, made here too: a key it could never have made names no
        # image, and a hostile one ("..", "a/b") could not even travel as one path segment
        # (HTTP clients collapse dot segments). The same error, without the round trip.
        if not is_valid_key(values["key"]):
            raise ImageNotFound(f"no image {values['key']!r}")
        return None

    def decode_response(self, response: WireResponse, values: dict[str, Any]) -> Any:
        content_type = response.content_type or "application/octet-stream"
        return ImageBlob(key=values["key"], content_type=content_type, data=response.content)

    def decode_request(self, req: falcon.Request, path_values: dict[str, str]) -> dict[str, Any]:
        return {"key": path_values["key"]}

    def encode_response(self, result: Any, resp: falcon.Response) -> None:
        resp.data = result.data
        resp.content_type = result.content_type
        resp.set_header("Cache-Control", CACHE_FOREVER)

    def openapi(self, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        binary = {"schema": {"type": "string", "contentMediaType": "image/jpeg"}}
        return {
            "responses": {"200": {"description": "the image", "content": {"image/jpeg": binary}}}
        }

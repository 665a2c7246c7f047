"""Image upload and the public image URLs (what the tutorial serves from a CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from blog.errors import InvalidInput
from blog.images import StoredImage
from blog.web.auth_guard import login_required
from blog.web.context import domains
from blog.web.openapi import Multipart, documented

bp = Blueprint("media", __name__)


@bp.post("/upload")
@login_required
@documented(
    "Upload an image; it is stored as a JPEG thumbnail",
    body=Multipart({"image": "The image file (JPEG, PNG, GIF or WebP)."}),
    response=StoredImage,
    status=201,
    errors=(400, 413, 415, 502, 503),
)
def upload() -> tuple[Response, int]:
    if not request.mimetype.startswith("multipart/form-data"):
        raise InvalidInput("send the image as multipart/form-data in the field 'image'")
    upload = request.files.get("image")
    if upload is None:
        raise InvalidInput("the multipart field 'image' is required", details={"field": "image"})
    stored = domains().images.upload(upload.read(), filename=upload.filename)
    return jsonify(stored), 201


@bp.get("/images/<key>")
@documented(
    "A stored image (public, cacheable forever)",
    response=bytes,
    media_type="image/jpeg",
    errors=(502, 503),
)
def image(key: str) -> Response:
    blob = domains().images.get(key)
    response = Response(blob.data, mimetype=blob.content_type)
    # Keys are never reused, so an image may be cached forever (CDN-style).
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response

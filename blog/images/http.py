"""The images interface served over HTTP (mounted by ``extracted/images``); ``client.py`` is the
other end of the same wire format. The bytes pass through untouched so the service's own checks
(size, format, pixel cap) produce exactly the errors the in-process call would.
"""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from blog.images import ImagesService, ImageTooLarge, InvalidImage
from blog.transport import public

CACHE_FOREVER = "public, max-age=31536000, immutable"
"""Keys are never reused, so a stored image may be cached forever (the tutorial's CDN)."""


def make_blueprint(service: ImagesService) -> Blueprint:
    bp = Blueprint("images_service", __name__)

    @bp.post("/upload")
    def upload() -> tuple[Response, int]:
        try:
            image = request.files.get("image")
        except RequestEntityTooLarge:
            # The request limit (max_upload_bytes plus multipart overhead) refused the body
            # unread: it is the same "too many bytes" the service's own check reports, so say
            # it with the same error the in-process call raises.
            limit = current_app.config["BLOG"].images.max_upload_bytes
            raise ImageTooLarge(
                f"the image is larger than {limit} bytes", details={"max_bytes": limit}
            ) from None
        if image is None:
            raise InvalidImage(
                "send the image as multipart/form-data in the field 'image'",
                details={"field": "image"},
            )
        stored = service.upload(image.read(), filename=image.filename)
        return jsonify(asdict(stored) | {"size": list(stored.size)}), 201

    # ``path:`` so that any key, even one with a slash in it, reaches the service and gets the
    # domain's own ImageNotFound rather than the router's generic 404.
    @bp.get("/images/<path:key>")
    @public  # reading a public image needs no credential, like a CDN; writing does
    def image(key: str) -> Response:
        blob = service.get(key)
        response = Response(blob.data, mimetype=blob.content_type)
        response.headers["Cache-Control"] = CACHE_FOREVER
        return response

    return bp

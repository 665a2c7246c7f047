"""Uploads and image URLs through the public API."""

from __future__ import annotations

import io

from PIL import Image

from tests.images import image_bytes, png_bomb


def _upload(client, headers, data: bytes, filename: str = "photo.jpg"):
    return client.post(
        "/api/upload",
        data={"image": (io.BytesIO(data), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_upload_resizes_and_serves_the_image(client, auth):
    headers = auth.signup()
    response = _upload(client, headers, image_bytes("PNG", (1600, 1200)), "../../etc/passwd.png")
    assert response.status_code == 201, response.get_json()
    stored = response.get_json()
    assert stored["size"] == [800, 600]
    assert "passwd" not in stored["key"]
    assert stored["url"] == f"/api/images/{stored['key']}"
    served = client.get(stored["url"])
    assert served.status_code == 200
    assert served.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(served.data)).size == (800, 600)


def test_non_image_is_a_400(client, auth):
    response = _upload(client, auth.signup(), b"this is not an image at all", "x.jpg")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_image"


def test_truncated_image_is_a_400(client, auth):
    data = image_bytes("JPEG", (400, 300))
    response = _upload(client, auth.signup(), data[: len(data) // 2])
    assert response.status_code == 400


def test_decompression_bomb_is_refused_quickly(client, auth):
    response = _upload(client, auth.signup(), png_bomb(), "bomb.png")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "image_too_many_pixels"


def test_oversized_upload_is_a_json_413(tmp_path, auth):
    from blog import create_app
    from tests.support import make_config

    app = create_app(make_config(tmp_path, images={"max_upload_bytes": 10_000}))
    try:
        client = app.test_client()
        headers = type(auth)(client).signup()
        response = _upload(client, headers, b"\xff" * 200_000)
        assert response.status_code == 413
        assert response.get_json()["error"]["code"] == "payload_too_large"
        small_limit = _upload(client, headers, image_bytes("JPEG", (2000, 2000)))
        assert small_limit.status_code == 413
    finally:
        app.extensions["blog.runtime"].close()  # its background jobs, and their lock files


def test_upload_needs_the_image_field(client, auth):
    headers = auth.signup()
    missing = client.post(
        "/api/upload",
        data={"file": (io.BytesIO(b"x"), "x.jpg")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert missing.status_code == 400
    not_multipart = client.post("/api/upload", json={"image": "x"}, headers=headers)
    assert not_multipart.status_code == 400


def test_unknown_and_traversal_keys_are_404(client):
    assert client.get("/api/images/0123456789abcdef0123456789abcdef.jpg").status_code == 404
    assert client.get("/api/images/..%2F..%2Fconfig.yaml").status_code == 404

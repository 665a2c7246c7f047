"""What the lab uploads: a photo-like 1-megapixel JPEG, and its multipart body."""

from __future__ import annotations

import io
import random

JPEG_SIZE = (1155, 866)  # 1.0 megapixel, 4:3


def jpeg_1mp(size: tuple[int, int] = JPEG_SIZE, quality: int = 90) -> bytes:
    """A photo-like JPEG (gradients plus blurred noise, so it compresses like a photo, not like
    a flat colour): 1155×866 at quality 90 is about 200 KB. Deterministic."""
    from PIL import Image, ImageFilter

    width, height = size
    noise = Image.frombytes("L", size, random.Random(width * height).randbytes(width * height))
    noise = noise.filter(ImageFilter.GaussianBlur(1.2))
    red = Image.linear_gradient("L").resize(size)
    blue = Image.radial_gradient("L").resize(size)
    channels = (
        Image.blend(red, noise, 0.35),
        Image.blend(noise, red, 0.5),
        Image.blend(blue, noise, 0.35),
    )
    image = Image.merge("RGB", channels)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def multipart_image(data: bytes, filename: str = "photo.jpg") -> tuple[bytes, str]:
    """``(body, content_type)`` of an upload, encoded once so no round pays for the encoding."""
    import urllib3

    return urllib3.encode_multipart_formdata({"image": (filename, data, "image/jpeg")})

"""Encoded test pictures, made with Pillow."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), mode: str = "RGB",
                color: object = (200, 40, 40), **save: object) -> bytes:
    """An encoded image of one colour, for any format and mode the tests need."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()

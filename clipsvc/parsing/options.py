"""A request's options beside its items: how vectors are written back (`?encoding=`, `encoding_format`)."""

from __future__ import annotations

from ..errors import ApiError, Code
from .form import FIELD_ECHO

# JSON numbers (the default), or base64 of the vector's little-endian float32 bytes (OpenAI's convention).
ENCODINGS = ("float", "base64")


def vector_encoding(value: object, field: str = "encoding") -> str:
    """The encoding a client asked for (None: the default), or an error naming `field`."""
    if value is None:
        return ENCODINGS[0]
    if value in ENCODINGS:
        return value
    shown = value[:FIELD_ECHO] if isinstance(value, str) else value
    raise ApiError(Code.INVALID_ENCODING, f"{field}={shown!r} is not supported; use {' or '.join(ENCODINGS)}",
                   field=field)

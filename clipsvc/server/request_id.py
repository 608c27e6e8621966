"""Request ids: taken from the client when safe to echo, otherwise a fresh UUID4."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

# Names we accept, in order. `request_id` is the user's own header; X-Request-ID is the common one.
HEADER_NAMES = ("request_id", "X-Request-ID")
RESPONSE_HEADER = "request_id"
MAX_LENGTH = 128
_SAFE = re.compile(rf"[A-Za-z0-9._:\-]{{1,{MAX_LENGTH}}}")


def new_request_id() -> str:
    return str(uuid.uuid4())


def incoming_request_id(headers: Mapping[str, str]) -> str | None:
    """The id the client sent, or None; whether it is safe is `is_safe`'s job."""
    for name in HEADER_NAMES:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def is_safe(value: str) -> bool:
    """Only short tokens are echoed into headers and logs, so nothing can be injected."""
    return _SAFE.fullmatch(value) is not None

"""Request ids: taken from the client when safe to echo, otherwise a fresh UUID4."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from ..errors import ApiError, Code

# Names we accept, in order, and echo in every response. `request_id` is the user's own header;
# X-Request-ID is the common one.
HEADER_NAMES = ("request_id", "X-Request-ID")
MAX_LENGTH = 128
# What may be echoed into headers and logs: short tokens only, so nothing can be injected.
PATTERN = rf"[A-Za-z0-9._:\-]{{1,{MAX_LENGTH}}}"
RULE = f"1-{MAX_LENGTH} letters, digits, '.', '_', ':' or '-'"  # the same, in words
_SAFE = re.compile(PATTERN)


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
    return _SAFE.fullmatch(value) is not None


def choose_request_id(headers: Mapping[str, str]) -> tuple[str, ApiError | None]:
    """The request's id, and the error to answer when the client sent one we cannot echo (it gets a new id)."""
    sent = incoming_request_id(headers)
    if sent is None:
        return new_request_id(), None
    if is_safe(sent):
        return sent, None
    return new_request_id(), ApiError(Code.INVALID_REQUEST_ID, f"The request_id header must be {RULE}; a new id "
                                                               "was assigned to this response", field=HEADER_NAMES[0])

"""Request ids: the client's when it is safe to echo, otherwise a fresh UUID4, and the request is served either way.

A client's id that breaks the rule below is replaced, as proxies such as Heroku's router do, rather than refused: the
image still gets embedded. The response says so in REPLACED_HEADER, and the request's log line keeps what the client
sent as `original_request_id`, escaped and truncated (`escaped`). Nothing of it is echoed, so nothing a client sends
here needs refusing; what cannot even be a header value (a control character but tab, DEL, a line over
limit_request_field_size) gunicorn refuses before the app sees it, with a JSON 400 or 431
(clipsvc.server.gunicorn_errors).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

# Names we accept, in order, and echo in every response. `request_id` is the user's own header;
# X-Request-ID is the common one.
HEADER_NAMES = ("request_id", "X-Request-ID")
# Sent, as `true`, only on a response whose request's id was replaced; named after the common header.
REPLACED_HEADER = "X-Request-ID-Replaced"
MAX_LENGTH = 128
# What may be echoed into headers and logs: short tokens only, so nothing can be injected.
PATTERN = rf"[A-Za-z0-9._:\-]{{1,{MAX_LENGTH}}}"
RULE = f"1-{MAX_LENGTH} letters, digits, '.', '_', ':' or '-'"  # the same, in words
_SAFE = re.compile(PATTERN)
# How much of a replaced id the log keeps: enough to find the client's bug, not a 8 KiB header per line.
ORIGINAL_SHOWN = 64


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


def choose_request_id(headers: Mapping[str, str]) -> tuple[str, str | None]:
    """The request's id, and what the client sent when it could not be used (the request then has a new id)."""
    sent = incoming_request_id(headers)
    if sent is None:
        return new_request_id(), None
    if is_safe(sent):
        return sent, None
    return new_request_id(), sent


def escaped(value: str, limit: int = ORIGINAL_SHOWN) -> str:
    """`value` fit for a log line: its first `limit` characters, everything but printable ASCII written as Python
    escapes (`\\t`, `\\x1b`, `\\xe9`; a backslash doubled, so the escapes are unambiguous), and a marker with the
    full length when cut. JSON would escape control characters too, but a log viewer that shows the decoded string
    would then hand them to the terminal; through gunicorn only a tab and bytes above 0x7F arrive here."""
    shown = "".join(_escape(char) for char in value[:limit])
    return shown if len(value) <= limit else f"{shown}... ({len(value)} characters)"


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if " " <= char <= "~":
        return char
    return char.encode("unicode_escape").decode("ascii")

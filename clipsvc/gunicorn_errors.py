"""gunicorn's own error replies (malformed HTTP, oversized headers) in our JSON shape, not HTML.

gunicorn answers requests it cannot parse before Flask sees them, with an HTML page written by
`gunicorn.util.write_error`. Each worker swaps that function for this one in `post_fork`.
"""

from __future__ import annotations

import json

from gunicorn import util

from .request_id import RESPONSE_HEADER, new_request_id


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Same signature and framing as gunicorn's, with a JSON body and a fresh request id."""
    request_id = new_request_id()
    code = reason.lower().replace(" ", "_")
    message = f"gunicorn refused the request: {mesg}" if mesg else f"gunicorn refused the request: {reason}"
    body = json.dumps({"error": {"status": status_int, "code": code, "message": message, "field": None}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        f"{RESPONSE_HEADER}: {request_id}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1", errors="replace"))


def install() -> None:
    util.write_error = write_json_error

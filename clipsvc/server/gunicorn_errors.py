"""gunicorn's own error replies (malformed HTTP, oversized headers) in our JSON shape, not HTML.

gunicorn answers requests it cannot parse before Flask sees them, with an HTML page written by
`gunicorn.util.write_error`. Each worker swaps that function for `write_gunicorn_error` in `post_fork` (the
signature and the lookup it relies on are checked in clipsvc.server.gthread_contract).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from gunicorn import util

from ..errors import WORKER_TIMEOUT_MESSAGE, ApiError, Code, error_body
from .request_id import HEADER_NAMES, new_request_id


def write_gunicorn_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """In place of gunicorn's util.write_error, same signature: our JSON body and a fresh request id (nothing of the
    client's echoed raw)."""
    if reason == "Bad Request" and status_int != 400:  # gunicorn's default reason rides along on 500 and 501
        reason = HTTPStatus(status_int).phrase
    code = reason.lower().replace(" ", "_")
    write_json_reply(sock, status_int, reason, code, f"gunicorn refused the request: {mesg or reason}")


def write_timeout_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """After gunicorn's timeout signal the request was cut off: that is a timeout, not a server bug (500)."""
    write_api_error(sock, ApiError(Code.WORKER_TIMEOUT, WORKER_TIMEOUT_MESSAGE))


def write_api_error(sock, exc: ApiError) -> None:
    """One of our errors, for a request Flask never saw."""
    write_json_reply(sock, exc.code, exc.name, exc.error.id, exc.description, exc.error.headers)


def write_json_reply(sock, status_int: int, reason: str, code: str, message: str,
                     headers: dict[str, str] | None = None) -> None:
    """Our error body, straight to the socket, for requests that never reached Flask; the connection closes."""
    request_id = new_request_id()
    body = json.dumps(error_body(status_int, code, message))
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        + "".join(f"{name}: {request_id}\r\n" for name in HEADER_NAMES) +
        "\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1", errors="replace"))


def install() -> None:
    """In each worker (post_fork): gunicorn's error replies become JSON."""
    util.write_error = write_gunicorn_error


def on_abort() -> None:
    """In a worker gunicorn is killing for its timeout (worker_abort): the reply it is about to send is ours."""
    util.write_error = write_timeout_error

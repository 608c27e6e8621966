"""HTTP/1.1 written and read by hand on a socket: for clients that trickle, stall or send what no library would."""

from __future__ import annotations

import socket
import time


def multipart_head(port: int, body: bytes, content_type: str, request_id: str) -> bytes:
    """The request line and headers of a POST /syte_test/clip whose body the caller sends at its own pace."""
    return (
        f"POST /syte_test/clip HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nrequest_id: {request_id}\r\n\r\n"
    ).encode()


def parse_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 reply."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def read_to_close(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection; (data, False) if it is still open at `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return data, False
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_reply(sock: socket.socket, timeout: float = 30) -> bytes:
    """One reply on a kept-alive connection: its headers, then Content-Length bytes."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(parse_reply(head + b"\r\n\r\n")[1]["content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def server_closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset); the client side is closed either way."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()

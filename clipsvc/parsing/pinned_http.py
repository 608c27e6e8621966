"""HTTP(S) connections made to an address already checked, while Host and the TLS name stay the URL's host.

A second DNS answer cannot swap the address between the check and the connection (DNS rebinding).
"""

from __future__ import annotations

import http.client
import socket
import ssl


def tls_context() -> ssl.SSLContext:
    """The system's certificate authorities, host names checked: a fetched image is only as good as its origin."""
    return ssl.create_default_context()


def connection(scheme: str, host: str, port: int, address: str, timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        return PinnedHTTPS(host, port, address, timeout)
    return PinnedHTTP(host, port, address, timeout)


class PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, while Host and TLS name stay the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        # Kept as `pinned` too: http.client lets go of `sock` once a response owns the connection.
        self.sock = self.pinned = socket.create_connection((self.address, self.port), self.timeout)


class PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=tls_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.pinned = self._context.wrap_socket(sock, server_hostname=self.host)

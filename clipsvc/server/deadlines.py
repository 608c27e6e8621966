"""A client's connection held to deadlines: headers in one, the body and the reply at a minimum rate.

`ClientSocket` wraps the socket gunicorn reads and writes: the request line and headers must arrive within
CLIP_HEADER_TIMEOUT_S; the body must start within CLIP_CLIENT_TIMEOUT_S, and each CLIP_CLIENT_MIN_RATE bytes
add one second (Apache's mod_reqtimeout `body=20,MinRate=500`); a reply is written under the same rule. A
read past its deadline raises our 408 `request_timeout` ApiError and marks the request for closing. `ClientConn` closes
such connections with a short linger in the request thread. clipsvc.server.worker uses both.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from gunicorn import util
from gunicorn.workers.gthread import TConn

from ..errors import ApiError, Code
from ..settings import Settings, env_var

LINGER_S = 1.0  # a closing connection's unread bytes are drained this long, in its request thread


@dataclass(frozen=True)
class ClientLimits:
    """How long a client may take to send its request (and to take its response)."""

    header_timeout: float = 5
    body_timeout: float = 20
    min_rate: int = 500  # bytes per second; 0: no extension, the body must arrive within body_timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(settings.header_timeout_s, settings.client_timeout_s, settings.client_min_rate)

    def allowance(self, nbytes: int) -> float:
        """Seconds to receive (or send) `nbytes`: the timeout plus one second per `min_rate` bytes."""
        return self.body_timeout + (nbytes / self.min_rate if self.min_rate else 0)


class ClientSocket:
    """A client's socket whose reads are held to the request's deadlines; everything else is the socket's own."""

    def __init__(self, sock: socket.socket, limits: ClientLimits):
        self._sock = sock
        self.limits = limits
        self._deadline: float | None = None  # headers: one fixed deadline
        self._body_start: float | None = None  # body: a deadline that grows with the bytes received
        self._received = 0
        self._request = None  # gunicorn's request being read, to mark it for closing on a timeout
        self.in_hand = False  # counted in the worker table as a request this worker holds

    def expect_headers(self, deadline: float) -> None:
        self._deadline, self._body_start, self._request = deadline, None, None

    def expect_body(self, request) -> None:
        self._deadline, self._body_start, self._received, self._request = None, time.monotonic(), 0, request

    def idle(self) -> None:
        """Between requests: gunicorn's own code (draining, closing) sets its own timeouts."""
        self._deadline = self._body_start = self._request = None

    def recv(self, size: int) -> bytes:
        if self._body_start is not None:
            deadline = self._body_start + self.limits.allowance(self._received)
        elif self._deadline is not None:
            deadline = self._deadline
        else:
            return self._sock.recv(size)
        data = self._timed(self._sock.recv, deadline - time.monotonic(), size)
        self._received += len(data)
        return data

    def sendall(self, data: bytes) -> None:
        """A response, with the same allowance as a body of its size: a client that stops reading is dropped."""
        try:
            self._timed(self._sock.sendall, self.limits.allowance(len(data)), data)
        except ApiError:  # only ever this socket's request_timeout
            raise BrokenPipeError(errno.EPIPE, "the client did not take the response in time") from None

    def _timed(self, call: Callable, seconds: float, *args):
        if seconds <= 0:
            raise self._timeout()
        previous = self._sock.gettimeout()
        self._sock.settimeout(seconds)
        try:
            return call(*args)
        except TimeoutError:
            raise self._timeout() from None
        finally:
            self._sock.settimeout(previous)

    def _timeout(self) -> ApiError:
        if self._request is not None:
            self._request.must_close = True  # the reply says Connection: close; the rest of the body is unread
        if self._body_start is not None:
            waited = time.monotonic() - self._body_start
            return ApiError(Code.REQUEST_TIMEOUT,
                            f"The request body came too slowly: {self._received} bytes in {waited:.0f} s. A body must "
                            f"start within {self.limits.body_timeout:g} s ({env_var('client_timeout_s')}) and keep up "
                            f"at least {self.limits.min_rate} bytes/s ({env_var('client_min_rate')}); send it again.")
        return ApiError(Code.REQUEST_TIMEOUT,
                        f"The request line and headers did not arrive within {self.limits.header_timeout:g} s "
                        f"({env_var('header_timeout_s')}); send them again.")

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class ClientConn(TConn):
    """gunicorn's connection, whose lingering close may already have happened in its request thread."""

    lingered = False

    def linger(self) -> None:
        """In the request thread: half-close, then drain what the client still sends, for at most LINGER_S.

        Closing with unread bytes makes the kernel send a reset, which can destroy the reply just sent. gunicorn
        drains in its main loop, up to 2 s per connection of a client that keeps trickling; here only this
        thread waits.
        """
        self.lingered = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            while (remaining := deadline - time.monotonic()) > 0:
                self.sock.settimeout(remaining)
                if not self.sock.recv(65536):
                    break
        except OSError:  # reset, timed out, or already gone: nothing more to wait for
            pass

    def close(self, graceful: bool = False) -> None:
        if self.lingered:
            util.close(self.sock)
        else:
            super().close(graceful)

"""gunicorn's threaded worker, hardened so that no client can hold the service by connecting and stalling.

gunicorn's gthread worker hands every new connection to a request thread, which then waits up to 5 s for
the first byte, and reads headers and body without any overall deadline. Here:

- a new connection waits in the worker's poller, taking no thread, until it sends something; one that sends
  nothing for CLIP_HEADER_TIMEOUT_S is closed (port scanners, load balancers' spare connections, browsers'
  preconnects);
- once it has sent something and a request thread takes it, the request line and headers must all arrive
  within CLIP_HEADER_TIMEOUT_S;
- the body must start within CLIP_CLIENT_TIMEOUT_S and keep a minimum rate: each CLIP_CLIENT_MIN_RATE
  bytes received add one second (Apache's mod_reqtimeout `body=20,MinRate=500`), so a 20 MB photo over
  1 Mbit/s gets through while a byte a second is cut off; a response is written under the same rule
  (clipsvc.server.deadlines);
- a cut-off request gets a JSON 408 `request_timeout` where a reply can still be sent, its connection is
  closed and its thread is free again;
- a worker accepts only while it has a free request thread and no other worker has fewer requests in hand
  (clipsvc.server.workertable, which also breaks ties), so new connections go to the worker that can serve them
  soonest;
- gunicorn's worker timeout still replaces a worker whose forward pass runs past CLIP_WORKER_TIMEOUT;
- on SIGTERM a worker stops listening at once (stop_listening): it takes what the kernel has already queued for it
  and closes its listening sockets, so that once every worker has, a new connection is refused at once (a client or
  load balancer retries elsewhere) instead of waiting for no one and being reset when the last worker exits; what
  it holds is answered within CLIP_GRACEFUL_TIMEOUT, as gthread drains.
"""

# ruff: noqa: E402  (the contract is checked before this module imports gthread's classes)
from __future__ import annotations

from . import gthread_contract

# First: a gunicorn whose gthread differs from what this module relies on stops start-up here, with one JSON line,
# rather than with an import error's traceback below or, worse, a worker whose overrides are never called.
gthread_contract.enforce()

import errno
import os
import selectors
import time
from collections.abc import Callable
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

from ..errors import ApiError, Code
from ..settings import Settings
from . import gunicorn_errors
from .deadlines import ClientConn, ClientLimits, ClientSocket
from .workertable import WorkerTable

BALANCE_POLL_S = 0.05  # how often a worker that let others accept looks again (gthread's loop waits up to 1 s)


class ClipWorker(ThreadWorker):
    """gthread with the deadlines above; `configure` is called from the post_fork hook."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = ClientLimits()
        self.alive_check: Callable[[], bool] = lambda: True
        self.table: WorkerTable | None = None
        self._in_threads = 0  # connections handed to request threads and not yet back (main thread only)
        self._deferring = False  # a free thread, but the connection was left to a less loaded worker
        self._listening = True  # until SIGTERM (stop_listening)

    def configure(self, settings: Settings, alive_check: Callable[[], bool],
                  table: WorkerTable | None = None) -> None:
        """From post_fork, once the model has loaded: the client deadlines, the heartbeat's check, the shared table."""
        self.limits, self.alive_check, self.table = ClientLimits.from_settings(settings), alive_check, table
        if table is not None:
            table.requests(os.getpid(), 0)  # an idle worker counts among the least loaded from the start

    def notify(self) -> None:
        """The heartbeat gunicorn's timeout watches; withheld while a forward pass runs past its grace."""
        if self.alive_check():
            super().notify()

    def set_accept_enabled(self, enabled: bool) -> None:
        """Listen for new connections only with a free request thread (whether to take one is decided in accept)."""
        super().set_accept_enabled(enabled and self._listening and self._in_threads < self.cfg.threads)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """After leaving a connection to another worker, listen again soon: the loads change without waking us."""
        if self._deferring:
            self._deferring = False
            timeout = min(timeout, BALANCE_POLL_S)
        super().wait_for_and_dispatch_events(timeout)

    def accept(self, listener) -> None:
        """Take the connection only as the least loaded worker; park it in the poller with its header deadline."""
        if not self._listening:  # the listener was readable in the same poll as SIGTERM's wake-up: closed since
            return
        if self.table is not None and not self.table.should_accept(self.pid):
            self.set_accept_enabled(False)  # gthread's loop listens again next time round
            self._deferring = True
            return
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self._park(client, address, listener)

    def _park(self, client, address, listener) -> None:
        """A new connection waits in the poller, taking no thread, until it sends something (or its header deadline)."""
        self.nr_conns += 1
        conn = ClientConn(self.cfg, ClientSocket(client, self.limits), address, listener.getsockname())
        conn.timeout = time.monotonic() + self.limits.header_timeout  # murder_pending closes it then
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    # Every gunicorn member relied on here (overrides, private state, what gthread's loop still does for us) is
    # declared, with its signature, in clipsvc.server.gthread_contract, and checked when this module is imported.
    def handle_exit(self, sig, frame) -> None:
        """SIGTERM: gthread's graceful stop (no longer alive, poller woken), and stop_listening on the main thread."""
        super().handle_exit(sig, frame)
        # Not in the handler itself, which may have interrupted the main thread in the middle of a poller change;
        # the method queue wakes the poller at once, so this runs within milliseconds.
        self.method_queue.defer(self.stop_listening)

    def stop_listening(self) -> None:
        """Accept every connection the kernel has already queued, then close this worker's listening sockets.

        All workers and the master share one listening socket: the kernel queues connections until the last copy
        is closed, and resets those still queued then. The master closes its copies before it signals the workers;
        each worker takes what is queued (served like any other connection) and closes its own, so the last close
        finds the queue empty (but for a connection made in the microseconds between its last accept and the close)
        and later connections are refused instead of reset."""
        if not self._listening:
            return
        self.set_accept_enabled(False)
        self._listening = False
        taken = 0
        for listener in self.sockets:
            listener.setblocking(False)
            for _ in range(self.cfg.backlog):  # bounded: the kernel queues no more; a flood must not hold us here
                try:
                    client, address = listener.accept()
                except OSError as exc:
                    if exc.errno == errno.ECONNABORTED:
                        continue
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        self.log.warning("could not take a queued connection: %s", exc)
                    break
                self._park(client, address, listener)
                taken += 1
            listener.close()
        self.log.info("stopped listening", extra={"event": "stopped_listening", "queued_connections": taken})

    def load_wsgi(self) -> None:
        """The app, wrapped so that a request is counted off once its reply is computed, before it is sent."""
        super().load_wsgi()
        app = self.wsgi

        def counted(environ, start_response):
            try:
                return app(environ, start_response)
            finally:
                self._count_off(environ["gunicorn.socket"])
        self.wsgi = counted

    def enqueue_req(self, conn) -> None:
        self._in_threads += 1
        if self._in_threads >= self.cfg.threads:
            self.set_accept_enabled(False)
        if self.table is not None and not conn.sock.in_hand:
            conn.sock.in_hand = True
            self.table.add_request(self.pid, +1)
        super().enqueue_req(conn)

    def _count_off(self, sock: ClientSocket) -> None:
        """Whichever comes first, the reply computed or the connection handed back: a client that reads the reply
        and connects again at once finds this worker idle again, so one client stays on one warm worker."""
        if self.table is not None and sock.in_hand:
            sock.in_hand = False
            self.table.add_request(self.pid, -1)

    def finish_request(self, conn, fs) -> None:
        self._in_threads -= 1
        super().finish_request(conn, fs)

    def handle(self, conn):
        """In a request thread: one request with its deadlines; a connection that ends is closed here."""
        # Due from now, not from the connect: a request queued behind busy threads has done nothing wrong.
        conn.sock.expect_headers(time.monotonic() + self.limits.header_timeout)
        try:
            keep = super().handle(conn)
        finally:
            self._count_off(conn.sock)
        conn.sock.idle()
        if not keep:
            conn.linger()
        return keep

    def handle_request(self, req, conn):
        conn.sock.expect_body(req)
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock.idle()

    def handle_error(self, req, client, addr, exc) -> None:
        """Headers that came too slowly get a JSON 408; gunicorn's other refusals are written as before."""
        if isinstance(exc, ApiError) and exc.error is Code.REQUEST_TIMEOUT:
            self.log.info("client too slow: %s", exc.description, extra={"event": "client_timeout"})
            try:
                gunicorn_errors.write_api_error(client, exc)
            except OSError:
                pass
            return
        super().handle_error(req, client, addr, exc)

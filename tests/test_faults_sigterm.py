"""SIGTERM (docker stop) under load, against real gunicorn: each worker stops listening at once, so a new connection
is refused within a fraction of a second; nothing the kernel accepted is reset; in-flight requests drain with 200;
the master exits 0 in time. The measured figures are printed (pytest -s) and kept with record_property.

The clients connect, then send (http.client), so that a refusal (nothing was sent: a client or a load balancer
retries elsewhere at once) is told apart from a reset after the connect (a request lost without an answer).
"""

from __future__ import annotations

import http.client
import signal
import time
import uuid
from dataclasses import dataclass

import requests
from conftest import image_bytes

from testkit.faults import ClientThreads, report, wait_for
from testkit.jsonlog import epoch
from testkit.server import HOST, gunicorn
from testkit.server import TEST_WORKERS as WORKERS

THREADS = 2  # request threads per worker: with more clients than threads, connections wait in the listen backlog
CLIENTS = WORKERS * THREADS + 4
GRACEFUL = 20  # the drain itself takes seconds at most; the rest is torch processes exiting, slower on a busy box
REFUSED_WITHIN_S = 0.5
# The one loss no server can prevent: a handshake that completes in the microseconds between the last worker's last
# accept and its close is reset by the kernel. Tolerated once a run, only as a reset, and only for a connection made
# within this long of that close (its log line is written right after it; clocks are the same machine's).
CLOSE_RACE_S = 0.02
PROBE_EVERY_S = 0.005
RESETS = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


@dataclass
class Attempt:
    """One connection: when it was made (epoch; None if refused), and the answer or the error after it."""
    started: float
    connected: float | None = None
    ended: float | None = None
    status: int | None = None
    error: BaseException | None = None


def connect(port: int, timeout: float) -> tuple[Attempt, http.client.HTTPConnection | None]:
    """A new connection to the server, or None if it was refused (any other error fails the test)."""
    attempt = Attempt(time.time())
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.connect()
    except ConnectionRefusedError as exc:
        attempt.error, attempt.ended = exc, time.time()
        connection.close()
        return attempt, None
    attempt.connected = time.time()
    return attempt, connection


def answer(attempt: Attempt, connection: http.client.HTTPConnection) -> Attempt:
    """Read the response to the request sent on `connection`, whole; any error after the connect is kept."""
    try:
        response = connection.getresponse()
        response.read()
        attempt.status = response.status
    except (OSError, http.client.HTTPException) as exc:  # reset, or closed without an answer
        attempt.error = exc
    finally:
        attempt.ended = time.time()
        connection.close()
    return attempt


class RawLoad(ClientThreads):
    """Client threads that post one prepared request after another, each on a new connection, until stopped or
    refused."""

    def __init__(self, port: int, body: bytes, content_type: str, timeout: float = 60):
        super().__init__(CLIENTS, timeout)
        self.port, self.body, self.content_type = port, body, content_type
        self.attempts: list[Attempt] = []

    def _run(self) -> None:
        while not self.stopped.is_set():
            attempt, connection = connect(self.port, self.timeout)
            self.attempts.append(attempt)
            if connection is None:
                return  # refused: the server has stopped listening
            try:
                connection.request("POST", "/syte_test/clip", body=self.body,
                                   headers={"Content-Type": self.content_type, "request_id": uuid.uuid4().hex})
            except OSError as exc:
                attempt.error, attempt.ended = exc, time.time()
                connection.close()
                continue
            answer(attempt, connection)

    def successes(self) -> int:
        return sum(a.status == 200 for a in self.attempts)


def probe_until_refused(port: int, deadline: float) -> tuple[list[Attempt], float | None]:
    """Connect every few milliseconds, sending GET /livez on each connection made, until a connect is refused; then
    read every answer. Returns the attempts and when the refusal came (None if not by `deadline`)."""
    attempts, sent = [], []
    refused_at = None
    while time.time() < deadline:
        attempt, connection = connect(port, GRACEFUL + 10)
        attempts.append(attempt)
        if connection is None:
            refused_at = attempt.ended
            break
        try:
            connection.request("GET", "/livez")
        except OSError as exc:  # reset as soon as it was made: lost
            attempt.error, attempt.ended = exc, time.time()
            connection.close()
        else:
            sent.append((attempt, connection))
        time.sleep(PROBE_EVERY_S)
    for attempt, connection in sent:
        answer(attempt, connection)
    return attempts, refused_at


def test_sigterm_stops_listening_at_once_resets_nothing_and_drains(model_dir, tmp_path, record_property):
    """docker stop: new connections refused at once, none the kernel accepted reset, in-flight ones answered 200."""
    big = image_bytes(size=(640, 480))
    files = {f"image-{i}": (f"{i}.jpg", big, "image/jpeg") for i in range(16)}
    prepared = requests.Request("POST", "http://x/", files=files).prepare()
    with gunicorn(model_dir, tmp_path / "server.log", CLIP_GRACEFUL_TIMEOUT=str(GRACEFUL),
                  CLIP_THREADS=str(THREADS)) as server:
        started = time.monotonic()
        assert requests.post(server.url + "/syte_test/clip", files=files, timeout=30).status_code == 200
        one_request_s = time.monotonic() - started
        with RawLoad(server.port, prepared.body, prepared.headers["Content-Type"]) as load:
            wait_for(lambda: load.successes() >= 2 * CLIENTS, 60, "steady load before SIGTERM")
            term_at = time.time()
            server.process.send_signal(signal.SIGTERM)
            probed, refused_at = probe_until_refused(server.port, term_at + 5)
            code = server.process.wait(GRACEFUL + 5)
            exited_after = time.time() - term_at
            wait_for(lambda: all(not t.is_alive() for t in load.threads), 10, "client threads to be refused")

    attempts = load.attempts + probed
    connected = [a for a in attempts if a.connected is not None]
    refused = [a for a in attempts if a.connected is None]
    records = server.log_records()
    stopped = [r for r in records if r.get("event") == "stopped_listening"]
    last_close = max((epoch(r) for r in stopped), default=0.0)
    raced = [a for a in connected if a.status != 200 and isinstance(a.error, RESETS)
             and last_close - CLOSE_RACE_S <= a.connected <= last_close + 0.002]
    lost = [a for a in connected if a.status != 200 and a not in raced]
    drained = [a for a in load.attempts if a.connected is not None and a.connected < term_at < a.ended]
    accepted_late = [a for a in connected if a.connected > term_at]
    taken = sum(r["queued_connections"] for r in stopped)
    report(record_property, "SIGTERM under load", one_16_image_request_s=round(one_request_s, 3),
           connections=len(attempts), drained_with_200=len(drained), accepted_after_sigterm=len(accepted_late),
           taken_from_backlog=taken, refused=len(refused),
           lost=len(lost), lost_as=sorted({type(a.error).__name__ for a in lost}), lost_in_close_race=len(raced),
           refused_after_s=None if refused_at is None else round(refused_at - term_at, 3),
           master_exit_code=code, master_exited_after_s=round(exited_after, 3))
    # The port refuses new connections within a fraction of a second: the clients retry elsewhere at once.
    assert refused_at is not None and refused_at - term_at < REFUSED_WITHIN_S
    # Every connection the kernel accepted, before SIGTERM or after, got its whole answer: none was reset, but for
    # at most one caught in the kernel's close race.
    assert not lost and len(raced) <= 1
    # At least one request was mid-flight when SIGTERM came, and at least one connection waited in the listen backlog
    # (more clients than request threads): both the drain and the taking of the backlog were exercised.
    assert drained, "no request was in flight at SIGTERM: the drain was not exercised"
    assert taken, "no connection waited in the listen backlog at SIGTERM: its taking was not exercised"
    assert all(isinstance(a.error, ConnectionRefusedError) for a in refused)
    assert len(stopped) == WORKERS
    assert code == 0 and exited_after < GRACEFUL
    assert any(r["message"] == "Shutting down: Master" for r in records)
    assert not any("WORKER TIMEOUT" in r["message"] or r["level"] in ("error", "critical") for r in records)

"""What the fault tests share: bounded waits, client threads under load, and the figures each test reports."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import requests

from testkit.images import image_bytes

SMALL_JPEG = image_bytes()
BROKEN_CONNECTION = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    """Poll until `condition()` is truthy and return its value; fail the test (never hang) after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def report(record_property, title: str, **figures) -> None:
    """Print the measured figures (visible with -s) and attach them to the test report."""
    for name, value in figures.items():
        record_property(name, value)
    print(f"\n[{title}] " + ", ".join(f"{name}={value}" for name, value in figures.items()))


def clip_files(request_number: int = 0) -> dict:
    """A valid image + text request for `requests`' files=."""
    return {"image-1": ("x.jpg", SMALL_JPEG, "image/jpeg"), "text-1": (None, f"a red square number {request_number}")}


@dataclass
class Outcome:
    request_id: str
    started: float
    ended: float
    status: int | None = None
    error: BaseException | None = None


class ClientThreads:
    """`count` threads running `_run`, started on entering, told to stop (`stopped`) and joined on leaving; a hung one
    fails the test."""

    def __init__(self, count: int, timeout: float):
        self.timeout = timeout
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)
        assert not any(thread.is_alive() for thread in self.threads), "a client thread hung"


class Load(ClientThreads):
    """Client threads that send valid requests back to back until stopped, every outcome recorded (epoch times)."""

    def __init__(self, server, threads: int, files, stop_on_error: bool = False, timeout: float = 30):
        super().__init__(threads, timeout)
        self.server, self.files, self.stop_on_error = server, files, stop_on_error
        self.outcomes: list[Outcome] = []

    def _run(self) -> None:
        while not self.stopped.is_set():
            outcome = Outcome(uuid.uuid4().hex, time.time(), 0.0)
            try:
                response = requests.post(self.server.url + "/syte_test/clip", files=self.files,
                                         headers={"request_id": outcome.request_id}, timeout=self.timeout)
                outcome.status = response.status_code
            except requests.RequestException as exc:
                outcome.error = exc
            outcome.ended = time.time()
            self.outcomes.append(outcome)
            if outcome.error is not None and self.stop_on_error:
                return

    def successes(self) -> int:
        return sum(o.status == 200 for o in self.outcomes)


def cause(error: BaseException) -> str:
    """What a client library's error comes down to: refused, reset, cut short, or its type."""
    text = str(error)
    for words, name in (("refused", "refused"), ("reset", "reset"), ("IncompleteRead", "cut short"),
                        ("aborted", "aborted")):
        if words in text:
            return name
    return type(error).__name__

"""Dynamic batching: many request threads hand rows to one inference thread, which runs them together.

On a GPU one forward pass of 64 images costs little more than one of a single image, so a worker
that serves several requests at once (gunicorn's gthread) gathers their rows into one batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("clipsvc.batching")


class BatchTimeout(TimeoutError):
    """The rows were not computed in time; they are dropped if their batch has not started."""


@dataclass(eq=False)
class _Job:
    rows: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    error: BaseException | None = None
    cancelled: bool = False
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """Runs `run(rows) -> results` (one result per row, same order) on batches from many callers."""

    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], max_batch: int = 64, max_wait_ms: float = 5,
                 name: str = "batcher"):
        self._run = run
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.batch_sizes: list[int] = []  # recent batch sizes, for tests and metrics
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Block until this caller's rows are computed; its results only, in its order."""
        if not rows:
            return []
        job = _Job(list(rows))
        self._queue.put(job)
        if not job.done.wait(timeout):
            job.cancelled = True
            raise BatchTimeout(f"{len(rows)} rows not computed within {timeout} s")
        if job.error is not None:
            raise job.error
        return job.results

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, size, closing = [first], len(first.rows), False
            deadline = time.monotonic() + self.max_wait
            while size < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    closing = True
                    break
                jobs.append(job)
                size += len(job.rows)
            self._execute([job for job in jobs if not job.cancelled])
            if closing:
                return

    def _execute(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        rows = [row for job in jobs for row in job.rows]
        started = time.monotonic()
        try:
            results = list(self._run(rows))
            if len(results) != len(rows):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(rows)} rows")
        except Exception as exc:
            if len(jobs) > 1:  # one caller's bad rows must not fail the others: retry each alone
                for job in jobs:
                    self._execute([job])
                return
            log.warning("batch failed: %s", exc)
            jobs[0].error = exc
            jobs[0].done.set()
            return
        self.batch_sizes = (self.batch_sizes + [len(rows)])[-1000:]
        if log.isEnabledFor(logging.DEBUG):  # bench/perf.py reads these to see how full batches are
            log.debug("batch", extra={"event": "batch", "batcher": self.name, "rows": len(rows), "callers": len(jobs),
                                      "wait_ms": round(1000 * (started - min(job.queued for job in jobs)), 2),
                                      "run_ms": round(1000 * (time.monotonic() - started), 2)})
        start = 0
        for job in jobs:
            job.results = results[start:start + len(job.rows)]
            start += len(job.rows)
            job.done.set()

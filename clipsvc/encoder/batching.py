"""One inference thread per worker: request threads hand it rows, it runs the model, one forward pass at a time.

Request threads (gunicorn's gthread) read, decode and preprocess in parallel; only this thread runs the model,
so two forward passes never compete inside one worker. With `merge` it also gathers rows of the same kind from
several requests into one batch, waiting up to `max_wait_ms` for more: on a GPU a forward pass of 64 images costs
little more than one of a single image; on a CPU (no wait) one pass over the rows already waiting reads the
weights once (`batch_plan` decides).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..settings import Settings, env_var

log = logging.getLogger(__name__)


class BatchTimeout(TimeoutError):
    """The rows were not computed in time; they are dropped if their batch has not started."""


class WorkerAborted(RuntimeError):
    """gunicorn is replacing this worker (a forward pass ran past its timeout); the rows were not computed."""


def batch_plan(settings: Settings, device_type: str) -> tuple[bool, float]:
    """Whether the inference thread merges concurrent requests' rows, and how long it waits for more (ms).

    `auto` merges rows that are already waiting on every device: one forward pass over them reads the weights
    once, which on a CPU serves several clients ~30% faster than passes one by one. Only on a GPU does it also
    wait CLIP_BATCH_WAIT_MS for more rows, where a bigger batch costs almost nothing; a CPU never holds a
    request back. `on` waits on any device, `off` runs each request's rows alone.
    """
    if settings.batching == "off":
        return False, 0.0
    if settings.batching == "on" or device_type == "cuda":
        return True, settings.batch_wait_ms
    return True, 0.0


@dataclass(eq=False)
class _Job:
    kind: str
    rows: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[Any] | None = None
    error: BaseException | None = None
    cancelled: bool = False
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """Runs `runners[kind](rows) -> results` (one result per row, same order) for many callers, in one thread."""

    def __init__(self, runners: Mapping[str, Callable[[list[Any]], Sequence[Any]]], max_batch: int = 64,
                 max_wait_ms: float = 5, merge: bool = True, name: str = "clip-inference"):
        self._runners = dict(runners)
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.merge = merge
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._held: deque[_Job] = deque()  # taken while gathering a batch of another kind; they go next
        self._running: list[_Job] = []
        self._started: float | None = None  # when the batch now running began (the worker's watchdog reads it)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def start(self, kind: str, rows: Sequence[Any]) -> _Job:
        """Queue rows without waiting: the caller prepares more work meanwhile, then calls wait."""
        job = _Job(kind, list(rows))
        self._queue.put(job)
        return job

    def wait(self, job: _Job, timeout: float | None = None) -> list[Any]:
        """This job's results, in its order, once computed."""
        if not job.done.wait(timeout):
            job.cancelled = True
            raise BatchTimeout(f"{len(job.rows)} rows not computed within {timeout} s")
        if job.error is not None:
            raise job.error
        return job.results

    def busy_for(self) -> float:
        """Seconds the batch now running has taken so far; 0 when the thread is idle."""
        started = self._started
        return 0.0 if started is None else time.monotonic() - started

    def abort(self) -> None:
        """Fail every waiting caller now (the worker is being killed): they can still answer their clients."""
        jobs = list(self._running) + list(self._held)
        while True:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for job in jobs:
            job.error = WorkerAborted(f"a forward pass in this worker ran past {env_var('worker_timeout')}")
            job.done.set()

    def _next(self, timeout: float | None) -> _Job:
        """The next job: a held one first. Raises queue.Empty after `timeout`."""
        if self._held:
            return self._held.popleft()
        return self._queue.get(timeout=timeout)

    def _loop(self) -> None:
        """Runs for the worker's life (a daemon thread): one batch at a time, first come first served."""
        while True:
            first = self._next(None)
            jobs, size = [first], len(first.rows)
            deadline = time.monotonic() + self.max_wait
            others: list[_Job] = []
            while self.merge and size < self.max_batch:
                try:
                    job = self._next(max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job.kind != first.kind:
                    others.append(job)  # the next batch's; order among them is kept
                    continue
                jobs.append(job)
                size += len(job.rows)
            self._held.extendleft(reversed(others))
            self._execute([job for job in jobs if not job.cancelled])

    def _execute(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        rows = [row for job in jobs for row in job.rows]
        started = time.monotonic()
        self._running, self._started = jobs, started
        try:
            results = list(self._runners[jobs[0].kind](rows))
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
        finally:
            self._running, self._started = [], None
        if log.isEnabledFor(logging.DEBUG):  # bench/perf.py reads these to see how full batches are
            log.debug("batch", extra={"event": "batch", "batcher": self.name, "kind": jobs[0].kind, "rows": len(rows),
                                      "callers": len(jobs),
                                      "wait_ms": round(1000 * (started - min(job.queued for job in jobs)), 2),
                                      "run_ms": round(1000 * (time.monotonic() - started), 2)})
        start = 0
        for job in jobs:
            if not job.done.is_set():  # abort() may have answered it already
                job.results = results[start:start + len(job.rows)]
                job.done.set()
            start += len(job.rows)

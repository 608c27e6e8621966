"""Torch threads that follow the load: all the cores for a worker serving alone, a share when others serve too.

One forward pass with 2 threads on 2 cores answers one client fastest; two workers with 1 thread each serve
several clients best; two workers with 2 threads each (4 threads on 2 cores) are slower than either. So before
every forward pass a worker counts the busy workers (requests in hand, or a forward pass running), itself
included, in the server's WorkerTable, and takes cores ÷ that many threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)


class BusyWorkers(Protocol):
    """The server's view of its workers (clipsvc.server.workertable.WorkerTable); the encoder needs only this."""

    def computing(self, pid: int, flag: bool) -> int:
        """Mark `pid` in or out of a forward pass; the number of busy workers, this one included."""


class ThreadBudget:
    """Sets torch's threads before each forward pass: `fixed` when the operator chose a number, else cores ÷ busy."""

    def __init__(self, cores: int, table: BusyWorkers | None = None, fixed: int | None = None):
        self.cores = max(1, cores)
        self.table = table
        self.fixed = fixed
        self.last = fixed or self.cores  # threads the latest forward pass used, for logs and tests

    @contextmanager
    def forward(self) -> Iterator[int]:
        """Around one forward pass, in the thread that runs it (torch's thread count is per calling thread)."""
        if self.fixed is not None or self.table is None:
            self.last = _use_threads(self.fixed or self.cores)
            yield self.last
            return
        pid = os.getpid()
        try:
            busy = self.table.computing(pid, True)
            self.last = _use_threads(max(1, self.cores // busy))
            if log.isEnabledFor(logging.DEBUG):  # bench/perf.py counts the threads forward passes got
                log.debug("threads", extra={"event": "threads", "threads": self.last, "busy": busy})
            yield self.last
        finally:
            self.table.computing(pid, False)


def _use_threads(threads: int) -> int:
    """torch is imported here, not at the top: the gunicorn master imports this module and never needs torch."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
